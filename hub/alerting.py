"""Alerting: every alert the hub raises, from any source, goes through :meth:`Alerting.raise_alert`.

It records the alert (the ``alerts`` table, owned here), publishes it for whoever listens
(the bridge, a control room), counts it for the interval summary, feeds it to the
combination rules (which may raise a ``combined`` alert in turn), and then tells its
listeners (work orders) with a :class:`~hub.alerts.RaisedAlert`. Sources: scoring (window
model, pattern detectors), threshold crossings at ingest, and device status (offline).
"""

import logging
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contract import topics
from contract.classes import HOUSEHOLD_CLASSES
from contract.codec import encode
from contract.messages import Alert
from hub.alerts import RESIDENT_EMERGENCY, RaisedAlert
from hub.metrics import HubMetrics
from hub.registry import Registry
from hub.rules import CombinationRule, CombinationRules
from servicekit.mqtt import MqttLink, NotConnected
from servicekit.sqlite import open_database

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY, raised_at REAL NOT NULL, device TEXT NOT NULL, metric TEXT NOT NULL,
    kind TEXT NOT NULL, score REAL NOT NULL, severity TEXT NOT NULL, model TEXT NOT NULL, status TEXT NOT NULL
);
"""

AlertListener = Callable[[RaisedAlert], Awaitable[object]]


class AlertLog:
    """The ``alerts`` table: one row per alert raised."""

    def __init__(self, path: Path) -> None:
        self._db = open_database(path, _SCHEMA)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.Lock()

    def close(self) -> None:
        self._db.close()

    def add(self, raised_at: float, device: str, metric: str, kind: str, score: float, severity: str,
            model: str) -> int:
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO alerts (raised_at, device, metric, kind, score, severity, model, status) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, 'open')", (raised_at, device, metric, kind, score, severity, model))
            return int(cur.lastrowid or 0)

    def latest(self, limit: int) -> list[dict[str, Any]]:
        """Newest first."""
        with self._lock:
            return [dict(r) for r in self._db.execute("SELECT * FROM alerts ORDER BY id DESC LIMIT ?", (limit,))]

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM alerts").fetchone()[0])


@dataclass
class IntervalAlerts:
    """Alerts raised in the current summary interval."""

    by_kind: Counter[str] = field(default_factory=Counter)
    by_severity: Counter[str] = field(default_factory=Counter)
    household: Counter[str] = field(default_factory=Counter)  # on household devices, by kind
    household_by_severity: Counter[str] = field(default_factory=Counter)


class Alerting:
    def __init__(self, log_: AlertLog, registry: Registry, rules: CombinationRules, metrics: HubMetrics,
                 publisher: MqttLink, community: str) -> None:
        self.log = log_
        self.registry = registry
        self.rules = rules
        self.metrics = metrics
        self.publisher = publisher
        self.community = community
        self.interval = IntervalAlerts()
        self._listeners: list[AlertListener] = []

    def listen(self, listener: AlertListener) -> None:
        """Call ``listener`` (awaited) with every alert raised, after it is recorded."""
        self._listeners.append(listener)

    def take_interval(self) -> IntervalAlerts:
        """The counts of the interval that ends now; a new interval starts."""
        taken, self.interval = self.interval, IntervalAlerts()
        return taken

    async def raise_alert(self, at: float, device: str, metric: str, kind: str, score: float, severity: str,
                          source: str = "rule", *, rule: CombinationRule | None = None) -> int:
        """Record, publish, count and pass on one alert; its id."""
        # On the event loop, like the writer: one small insert, and no wait for a worker thread
        # (measured: that hop, behind the scorer's window inserts, was the tail of alert latency).
        alert_id = self.log.add(at, device, metric, kind, score, severity, source)
        try:  # for whoever listens (the bridge, a control room); the record is in SQLite either way
            self.publisher.publish_nowait(topics.hub_alert(self.community), encode(Alert(
                id=alert_id, device=device, metric=metric, kind=kind, severity=severity, score=score, ts=at,
                raised_at=time.time())), qos=1)
        except NotConnected:
            self.metrics.count("alerts_not_published")
        self.metrics.alerts.labels(kind).inc()
        self.metrics.count("alerts")
        self.interval.by_kind[kind] += 1
        self.interval.by_severity[severity] += 1
        state = self.registry.devices.get(device)
        if state is None:
            return alert_id
        if state.device_class in HOUSEHOLD_CLASSES:
            self.interval.household[kind] += 1
            self.interval.household_by_severity[severity] += 1
        if kind != "combined":
            for combined in self.rules.observe(at, device, state.building, state.device_class, metric, kind):
                r = combined.rule
                log.warning("combined: rule=%s %s=%s devices=%s", r.name, r.scope, combined.scope_key,
                            ",".join(combined.devices))
                await self.raise_alert(at, combined.devices[-1], r.name, "combined", 1.0, r.severity,
                                       f"rule:{r.name}", rule=r)
        raised = RaisedAlert(alert_id, at, device, metric, kind, score, severity, source, rule)
        for listener in self._listeners:
            await listener(raised)
        return alert_id

    def raise_resident_alert(self, at: float, place: str, category: str, ticket: str) -> int:
        """A resident's emergency report: a critical alert recorded at once for the staff on duty
        (``/api/alerts``, the staff page), as ``device = place:<place>``, ``metric = <category>``,
        ``model = ticket:<ticket>``: never the resident's words or identity. It stays in the
        community: not published, not in the interval summary's counts; the residents' intake
        opens its work order itself."""
        alert_id = self.log.add(at, f"place:{place}", category, RESIDENT_EMERGENCY, 1.0, "critical", f"ticket:{ticket}")
        self.metrics.alerts.labels(RESIDENT_EMERGENCY).inc()
        self.metrics.count("alerts")
        log.warning("resident emergency: %s at %s (ticket %s), alert %d", category, place, ticket, alert_id)
        return alert_id

    async def threshold_crossed(self, ts: float, device: str, metric: str, value: float, bound: str,
                                limit: float) -> None:
        """A device's desired threshold (or rate limit) crossed, as ingest saw it."""
        await self.raise_alert(ts, device, metric, "rate_of_change" if bound == "rate" else "threshold", value,
                               "warning")
        log.warning("threshold: device=%s %s=%s beyond its %s limit %s", device, metric, value, bound, limit)
