"""When the hub asks a gateway for a rebirth (as Sparkplug hosts do when they lose the
thread of an edge node), at most once per gateway per ``min_interval_s``.

It asks on a message from an agent run it never saw born (its birth lost, or the hub's
state reset), or a live sequence number more than ``seq_gap`` past the run's highest
(messages lost, or an outage longer than that: the new birth is cheap either way).
Replayed history is out of order by nature and is not watched. The command itself is sent
by the device twin after the batch commits.
"""

import time
from typing import Any

from hub.metrics import HubMetrics
from hub.registry import Registry


class RunWatch:
    def __init__(self, registry: Registry, metrics: HubMetrics, *, seq_gap: int = 1000,
                 min_interval_s: float = 60.0) -> None:
        self.registry = registry
        self.metrics = metrics
        self.seq_gap = seq_gap
        self.min_interval_s = min_interval_s
        self._highest: dict[str, list[Any]] = {}  # gateway -> [boot, highest live seq of that run]
        self._asked: dict[str, float] = {}  # gateway -> when the hub last asked (monotonic)

    def watch(self, gateway: str, boot: str, seq: int, hist: bool, announced: bool,
              out: list[tuple[str, str, str]]) -> None:
        """Append (gateway, reason, detail) to ``out`` when this message calls for a rebirth."""
        if not announced:
            self._ask(gateway, "no-birth", f"messages from agent run {boot!r}, whose birth the hub never saw", out)
            return
        if hist:
            return
        last = self._highest.get(gateway)  # [boot, seq], updated in place: this runs for every message
        if last is None or last[0] != boot:
            self._highest[gateway] = [boot, seq]
        elif seq > last[1]:
            gap, last[1] = seq - last[1], seq
            if gap > self.seq_gap:
                self._ask(gateway, "seq-gap", f"agent run {boot!r}: seq {seq - gap}, then {seq}", out)

    def _ask(self, gateway: str, reason: str, detail: str, out: list[tuple[str, str, str]]) -> None:
        now = time.monotonic()
        asked = self._asked.get(gateway)
        if asked is not None and now - asked < self.min_interval_s:
            # Held back by the rate limit, and counted. A flood of unannounced messages comes
            # this way once per message: a plain counter, not a Prometheus child's lock.
            self.metrics.totals["rebirths_held_back"] += 1
            return
        self._asked[gateway] = now
        self.metrics.rebirths.labels(reason).inc()
        self.metrics.count("rebirth_requests")
        self.registry.gateways[gateway].rebirth_asked = {"at": time.time(), "reason": reason, "detail": detail}
        out.append((gateway, reason, detail))
