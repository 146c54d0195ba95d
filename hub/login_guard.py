"""Login floods: failed logins per account and per address back off exponentially, and password
hashing runs in a small bounded pool of its own, so a flood of logins is refused fast and the
rest of the API stays responsive.

A scrypt hash takes ~50 ms and 16 MiB; run in the web server's shared thread pool (40 threads)
200 parallel logins held 40 of them at once, with 640 MiB, and every other request waited.
Here at most ``workers`` hashes run and ``queue`` wait; one more is refused at once (503).
Before any hashing, a key (``user:<name>`` or ``addr:<ip>``) that failed more than its free
allowance is refused (429) until its backoff ends: ``base_delay_s`` doubling per further
failure, capped at ``max_delay_s``; a key quiet for ``forget_after_s`` starts over. The table
of keys is bounded (oldest forgotten first).
"""

import asyncio
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from prometheus_client import CollectorRegistry
from prometheus_client import Counter as PromCounter

T = TypeVar("T")


class LoginRefused(Exception):
    """A login not attempted: too many failures (429) or the hashing pool is full (503)."""

    def __init__(self, status: int, retry_after_s: float, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.retry_after_s = max(1, math.ceil(retry_after_s))
        self.reason = reason


@dataclass
class _Failures:
    count: int = 0
    last: float = 0.0
    blocked_until: float = 0.0


class LoginGuard:
    def __init__(self, *, registry: CollectorRegistry, account_free: int = 5, address_free: int = 20,
                 base_delay_s: float = 1.0, max_delay_s: float = 300.0, forget_after_s: float = 900.0,
                 max_keys: int = 10_000, workers: int = 2, queue: int = 8,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._free = {"user": account_free, "addr": address_free}
        self._base, self._max, self._forget = base_delay_s, max_delay_s, forget_after_s
        self._max_keys = max_keys
        self._keys: OrderedDict[str, _Failures] = OrderedDict()
        self._clock = clock
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="login-hash")
        self._capacity = workers + queue
        self._in_flight = 0
        self.results = PromCounter("midbrain_hub_logins", "Login attempts by result: ok, failed, rate_limited "
                                   "(429, backing off), busy (503, hashing pool full)", ["result"],
                                   registry=registry)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def check(self, name: str, address: str) -> None:
        """Raise LoginRefused (429) while the account or the address is backing off."""
        now = self._clock()
        wait = max(self._blocked_for(f"user:{name}", now), self._blocked_for(f"addr:{address}", now))
        if wait > 0:
            self.results.labels("rate_limited").inc()
            raise LoginRefused(429, wait, "too many failed logins: wait before trying again (登录失败次数过多，请稍后再试)")

    async def hash_in_pool(self, fn: Callable[..., T], *args: object) -> T:
        """Run ``fn`` (which hashes a password) in the bounded pool; LoginRefused (503) when full."""
        if self._in_flight >= self._capacity:
            self.results.labels("busy").inc()
            raise LoginRefused(503, 1, "too many logins at once: try again in a moment (登录请求过多，请稍后再试)")
        self._in_flight += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)
        finally:
            self._in_flight -= 1

    def failed(self, name: str, address: str) -> None:
        self.results.labels("failed").inc()
        now = self._clock()
        for key in (f"user:{name}", f"addr:{address}"):
            entry = self._entry(key, now)
            entry.count += 1
            entry.last = now
            over = entry.count - self._free[key.split(":", 1)[0]]  # the allowance used up: wait before the next
            if over >= 0:
                entry.blocked_until = now + min(self._max, self._base * 2 ** over)

    def succeeded(self, name: str) -> None:
        """The account's failures are forgiven; the address's are not (one good account must
        not reset a guessing address)."""
        self.results.labels("ok").inc()
        self._keys.pop(f"user:{name}", None)

    def _blocked_for(self, key: str, now: float) -> float:
        entry = self._keys.get(key)
        return 0.0 if entry is None or now - entry.last > self._forget else entry.blocked_until - now

    def _entry(self, key: str, now: float) -> _Failures:
        entry = self._keys.get(key)
        if entry is None or now - entry.last > self._forget:
            entry = self._keys[key] = _Failures()
        self._keys.move_to_end(key)
        while len(self._keys) > self._max_keys:
            self._keys.popitem(last=False)
        return entry
