"""Desired thresholds (set through the device twin), checked on every live reading at ingest.

One excursion raises one crossing: a series outside its limits re-arms only once it is back
inside by ``HYSTERESIS`` of the band, and a series changing faster than its rate limit
re-arms below half the limit. Crossings are collected in the ingest's pending batch and
raised as alerts after the batch commits.
"""

from typing import Any

HYSTERESIS = 0.02  # of the band (or of the limit): how far back inside a value must come to re-arm

Limits = dict[str, tuple[float | None, float | None, float | None]]  # metric -> (low, high, rate per minute)
# (ts, device, metric, value, bound "low"/"high"/"rate", limit)
Crossing = tuple[float, str, str, float, str, float]


class ThresholdWatch:
    def __init__(self) -> None:
        self.limits: dict[str, Limits] = {}  # by device
        self._outside: set[tuple[str, str]] = set()
        self._too_fast: set[tuple[str, str]] = set()  # series whose rate of change is over its limit now
        self._last: dict[tuple[str, str], tuple[float, float]] = {}  # (ts, value) of series with a rate limit

    def set_limits(self, device: str, doc: dict[str, Any]) -> None:
        """The limits of a twin's desired document (its ``thresholds``)."""
        limits = doc.get("thresholds") or {}
        assert isinstance(limits, dict)
        self.limits[device] = {m: (t.get("low"), t.get("high"), t.get("rate_per_min")) for m, t in limits.items()}

    def check(self, device: str, ts: float, metrics: Any, limits: Limits, out: list[Crossing]) -> None:
        """Append to ``out`` the crossings this reading makes."""
        for name, (low, high, rate) in limits.items():
            value = metrics.get(name)
            if value is None:
                continue
            key = (device, name)
            if rate is not None:
                self._check_rate(key, ts, value, rate, out)
            if low is None and high is None:
                continue
            if key in self._outside:  # back inside only with a margin: no alert storm at the limit
                span = abs(high - low) if low is not None and high is not None else abs(low if high is None else high)
                margin = HYSTERESIS * (span or 1.0)
                if (low is None or value >= low + margin) and (high is None or value <= high - margin):
                    self._outside.discard(key)
            elif low is not None and value < low:
                self._outside.add(key)
                out.append((ts, device, name, value, "low", low))
            elif high is not None and value > high:
                self._outside.add(key)
                out.append((ts, device, name, value, "high", high))

    def _check_rate(self, key: tuple[str, str], ts: float, value: float, limit: float, out: list[Crossing]) -> None:
        """A change faster than ``limit`` a minute raises once; it re-arms below half the limit."""
        last = self._last.get(key)
        self._last[key] = (ts, value)
        if last is None or ts <= last[0]:
            return
        per_min = abs(value - last[1]) / (ts - last[0]) * 60.0
        if key in self._too_fast:
            if per_min <= limit / 2:
                self._too_fast.discard(key)
        elif per_min > limit:
            self._too_fast.add(key)
            out.append((ts, key[0], key[1], per_min, "rate", limit))
