"""Failed ticket+PIN attempts, limited per ticket and per client address (the login guard's
idea, hub/login_guard.py, with a fixed window): after ``attempts`` failures in ``window_s``
either key is refused (429) until its oldest failure leaves the window. An unknown ticket
counts exactly as a wrong PIN, so the answers do not tell which tickets exist."""

import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable

log = logging.getLogger(__name__)


class PinRefused(Exception):
    def __init__(self, retry_after_s: float) -> None:
        super().__init__("too many wrong ticket numbers or PINs: wait before trying again "
                         "(工单号或查询码错误次数过多，请稍后再试)")
        self.retry_after_s = max(1, int(retry_after_s + 0.999))


class PinGuard:
    def __init__(self, attempts: int, *, window_s: float = 900.0, max_keys: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.attempts = attempts
        self.window_s = window_s
        self._max_keys = max_keys
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def check(self, ticket: str, address: str) -> None:
        """Raise PinRefused while the ticket or the address has used up its attempts."""
        now = self._clock()
        wait = max(self._wait(f"ticket:{ticket}", now), self._wait(f"addr:{address}", now))
        if wait > 0:
            raise PinRefused(wait)

    def failed(self, ticket: str, address: str) -> None:
        now = self._clock()
        for key in (f"ticket:{ticket}", f"addr:{address}"):
            times = self._failures.setdefault(key, deque())
            times.append(now)
            self._failures.move_to_end(key)
        while len(self._failures) > self._max_keys:
            self._failures.popitem(last=False)
        log.warning("residents: wrong ticket or PIN for %s from %s", ticket[:32], address)  # never the PIN

    def _wait(self, key: str, now: float) -> float:
        times = self._failures.get(key)
        if times is None:
            return 0.0
        while times and now - times[0] >= self.window_s:
            times.popleft()
        return times[0] + self.window_s - now if len(times) >= self.attempts else 0.0
