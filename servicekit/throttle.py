"""Keep a log readable under a flood: at most N lines per key per interval.

What is throttled is only the log line; the caller still counts and keeps every item.
"""

import time


class LogThrottle:
    def __init__(self, per_interval: int = 20, interval_s: float = 60.0) -> None:
        self.per_interval = per_interval
        self.interval_s = interval_s
        self._windows: dict[str, tuple[float, int, int]] = {}  # key -> (window start, logged, suppressed)

    def allow(self, key: str, now: float | None = None) -> tuple[bool, int]:
        """``(log it?, lines suppressed for this key in the previous window)``."""
        now = time.monotonic() if now is None else now
        start, logged, suppressed = self._windows.get(key, (now, 0, 0))
        carried = 0
        if now - start >= self.interval_s:
            carried, start, logged, suppressed = suppressed, now, 0, 0
        if logged < self.per_interval:
            self._windows[key] = (start, logged + 1, suppressed)
            return True, carried
        self._windows[key] = (start, logged, suppressed + 1)
        return False, carried
