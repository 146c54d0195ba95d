"""The false-alarm budget: alerts per device per week, turned into the per-reading share
that :func:`hub.normal.fit_normal` sets its limits from, and the alerts spent against it.

Per reading: a false alert is one alarm episode, taken to span ``episode`` readings over
a limit (the trailing median needs about that many to rise), so a budget of B alerts a
week at R readings a week allows B·episode/R of the readings over a limit. That share is
clamped to what the fit's rows can resolve: below 2/n (n training rows), the
(1 - share/2) quantile of n held-out statistics is their largest, and the limit can go no
further out from the data; above 0.5 a limit would sit inside the usual readings.

Overspending: a device that raised more than its budget in the trailing week has its
limits (T² and Q) multiplied, at its next refit, by spent/budget (on top of any earlier
widening; a widening is never undone).
"""

from collections import deque

import numpy as np

__all__ = ["Spent", "WEEK_S", "cadence_s", "per_reading_budget"]

WEEK_S = 7 * 86400.0


def cadence_s(timestamps: np.ndarray) -> float:
    """Seconds between a device's readings: the median gap (robust to an outage)."""
    gaps = np.diff(np.asarray(timestamps, dtype=np.float64))
    gaps = gaps[gaps > 0]
    if gaps.size == 0:
        raise ValueError("the readings span no time: no cadence")
    return float(np.median(gaps))


def per_reading_budget(alerts_per_week: float, cadence: float, episode: int, rows: int) -> tuple[float, float]:
    """(share of readings allowed over a limit, unclamped share): see the module docstring."""
    wanted = alerts_per_week * episode * cadence / WEEK_S
    return float(min(max(wanted, 2.0 / rows), 0.5)), wanted


class Spent:
    """Alerts one device raised, by time; how many in the trailing week."""

    def __init__(self, maxlen: int = 10_000) -> None:
        self._at: deque[float] = deque(maxlen=maxlen)

    def add(self, at: float) -> None:
        self._at.append(at)

    def in_week(self, now: float) -> int:
        while self._at and self._at[0] <= now - WEEK_S:
            self._at.popleft()
        return len(self._at)
