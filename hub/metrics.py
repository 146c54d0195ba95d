"""The hub's counters: Prometheus metrics in a per-instance registry, plus plain totals."""

from collections import Counter
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry
from prometheus_client import Counter as PromCounter
from prometheus_client import Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from hub.dead_letters import DeadLetterStats


class HubMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.received = PromCounter("midbrain_hub_messages_received", "Messages received, by kind", ["kind"], registry=r)
        self.dead = PromCounter("midbrain_hub_dead_letters", "Messages dead-lettered, by reason", ["reason"], registry=r)
        self.stored = PromCounter("midbrain_hub_telemetry_stored", "Telemetry messages stored", registry=r)
        self.duplicates = PromCounter("midbrain_hub_duplicates", "Redelivered messages dropped by (gateway, boot, seq)", registry=r)
        self.alerts = PromCounter("midbrain_hub_alerts_raised", "Alerts raised, by kind", ["kind"], registry=r)
        self.windows = PromCounter("midbrain_hub_windows_scored", "Windows scored by the anomaly model", registry=r)
        self.summaries = PromCounter("midbrain_hub_summaries_published", "Community summaries published", registry=r)
        self.influx_points = PromCounter("midbrain_hub_influx_points", "Readings for the InfluxDB sink, by result "
                                         "(queued, written, retried, dropped)", ["result"], registry=r)
        self.not_good = PromCounter("midbrain_hub_points_not_good", "Points a reading marked uncertain or bad, "
                                    "by level and reason (counted, not hidden)", ["level", "reason"], registry=r)
        self.rebirths = PromCounter("midbrain_hub_rebirth_requests", "Rebirths asked of gateways, by reason "
                                    "(no-birth, seq-gap); those the rate limit held back are rebirths_held_back "
                                    "in /api/stats", ["reason"], registry=r)
        self.pending = Gauge("midbrain_hub_write_queue_depth", "Rows waiting for the SQLite writer", registry=r)
        self.online = Gauge("midbrain_hub_devices_online", "Devices online", registry=r)
        self.totals: Counter[str] = Counter()  # cumulative over every run of this hub (base + this run)
        self._persisted: Counter[str] = Counter()

    def count(self, name: str, n: int = 1) -> None:
        self.totals[name] += n

    def restore(self, persisted: dict[str, int]) -> None:
        """Start from the totals an earlier run stored."""
        self.totals.update(persisted)
        self._persisted.update(persisted)

    def take_deltas(self) -> dict[str, int]:
        """What changed since the last call, to persist with the rows those changes describe."""
        deltas = {k: v - self._persisted[k] for k, v in self.totals.items() if v != self._persisted[k]}
        self._persisted.update(deltas)
        return deltas

    def committed(self, changes: dict[str, int]) -> None:
        """Counter changes the store already committed (corrections for repeated messages)."""
        self.totals.update(changes)
        self._persisted.update(changes)

    def watch_dead_letters(self, stats: "Callable[[], DeadLetterStats]") -> None:
        """Show what the store holds of the dead letters, read at each scrape."""
        self.registry.register(_DeadLetterCollector(stats))

    def dead_letter(self, reason: str) -> None:
        self.dead.labels(reason).inc()
        self.totals["dead_lettered"] += 1


class _DeadLetterCollector(Collector):
    """The dead-letter quota at /metrics: rows and bytes held, and per reason stored, truncated, evicted."""

    def __init__(self, stats: "Callable[[], DeadLetterStats]") -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        s = self._stats()
        yield GaugeMetricFamily("midbrain_hub_dead_letters_held_rows", "Dead letters stored now", value=s.rows)
        yield GaugeMetricFamily("midbrain_hub_dead_letters_held_bytes",
                                "Bytes the stored dead letters hold (topic, detail, payload prefix)", value=s.bytes)
        for name, doc, counts in (
                ("midbrain_hub_dead_letters_held", "Dead letters stored now, by reason", s.rows_by_reason),
                ("midbrain_hub_dead_letters_stored", "Dead letters written to the database, by reason", s.stored),
                ("midbrain_hub_dead_letters_truncated", "Dead letters whose payload was cut to its prefix, by reason",
                 s.truncated),
                ("midbrain_hub_dead_letters_evicted", "Dead letters deleted to keep within the quota, by reason",
                 s.evicted)):
            family = (GaugeMetricFamily if name.endswith("held") else CounterMetricFamily)(name, doc, labels=["reason"])
            for reason, n in sorted(counts.items()):
                family.add_metric([reason], n)
            yield family
