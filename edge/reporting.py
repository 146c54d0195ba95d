"""Report by exception: a point is sent when it moved beyond its deadband, or when it
has not been sent for ``max_report_s`` (so the hub can tell "unchanged" from "silent")."""

from dataclasses import dataclass


@dataclass
class _Last:
    value: float
    at: float


class ReportFilter:
    def __init__(self, deadbands: dict[str, float], max_report_s: float, *, every_poll: bool = False) -> None:
        self.deadbands = deadbands
        self.every_poll = every_poll
        self.max_report_s = max_report_s
        self._last: dict[str, _Last] = {}
        self.suppressed = 0

    def due(self, values: dict[str, float], now: float) -> dict[str, float]:
        """The subset of ``values`` to report now (and remember as reported)."""
        if self.every_poll:
            return dict(values)
        out: dict[str, float] = {}
        for name, value in values.items():
            last = self._last.get(name)
            if (last is None or abs(value - last.value) > self.deadbands.get(name, 0.0)
                    or now - last.at >= self.max_report_s):
                out[name] = value
                self._last[name] = _Last(value, now)
            else:
                self.suppressed += 1
        return out

    def forget(self) -> None:
        """Report everything on the next read (after a rebirth or when a device comes back)."""
        self._last.clear()
