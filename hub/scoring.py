"""Scoring: sliding windows -> the window model and the pattern detectors -> alert candidates.

Ingest feeds :attr:`Scoring.windows`, :attr:`Scoring.patterns` (and :attr:`Scoring.normals`,
when enabled) with live readings; every
``stride_s`` :meth:`Scoring.score_now` scores them, records each window (the ``windows``
table, owned here, for the staff page and the API), and passes what the debounce policies
let through to alerting. Which model scores is :mod:`hub.model_reload`'s business: it swaps
models in through :meth:`use_model` and :meth:`use_detector`.
"""

import asyncio
import logging
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from hub.alerts import AlertPolicy
from hub.inference import WindowModel
from hub.metrics import HubMetrics
from hub.normals import NormalDetectors
from hub.patterns import PatternDetector
from hub.registry import Registry
from hub.windows import Windows
from servicekit.lifecycle import wait_or_stop
from servicekit.sqlite import open_database

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS windows (
    window_end REAL NOT NULL, device TEXT NOT NULL, metric TEXT NOT NULL, count INTEGER NOT NULL,
    mean REAL NOT NULL, min REAL NOT NULL, max REAL NOT NULL, score REAL NOT NULL, kind TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS windows_by_device ON windows (device, window_end);
"""

WindowRow = tuple[float, str, str, int, float, float, float, float, str]
# (at, device, metric, kind, score, severity, source): how a candidate is raised
RaiseAlert = Callable[[float, str, str, str, float, str, str], Awaitable[object]]


class ScoreLog:
    """The ``windows`` table: the 1-minute window aggregates and their anomaly scores."""

    def __init__(self, path: Path) -> None:
        self._db = open_database(path, _SCHEMA)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.Lock()

    def close(self) -> None:
        self._db.close()

    def add(self, rows: Sequence[WindowRow]) -> None:
        with self._lock:
            self._db.executemany("INSERT INTO windows VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)

    def latest(self, device: str | None, metric: str | None, limit: int) -> list[dict[str, Any]]:
        """Newest first, of one device and metric when given."""
        where = [f"{k} = ?" for k, v in (("device", device), ("metric", metric)) if v is not None]
        args = [v for v in (device, metric) if v is not None]
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        with self._lock:
            return [dict(r) for r in self._db.execute(
                f"SELECT * FROM windows {clause} ORDER BY window_end DESC LIMIT ?", (*args, limit))]

    def expire(self, before: float) -> int:
        """Delete windows that ended before ``before``; how many."""
        with self._lock:
            return self._db.execute("DELETE FROM windows WHERE window_end < ?", (before,)).rowcount


class Scoring:
    def __init__(self, model: WindowModel, registry: Registry, metrics: HubMetrics, *, window_s: float,
                 threshold: float, cooldown_s: float, patterns: dict[str, PatternDetector]) -> None:
        self.windows = Windows(model, window_s)
        self.registry = registry
        self.metrics = metrics
        self.policy = AlertPolicy(threshold, cooldown_s)
        self.patterns = patterns  # by device class; ingest feeds them (the same dict)
        # One alert per incident: a leak is not raised again within its window (3 h).
        self.pattern_policies = {c: AlertPolicy(d.threshold, max(cooldown_s, d.window_s)) for c, d in patterns.items()}
        self.score_log: ScoreLog | None = None
        self._raise: RaiseAlert | None = None
        self.normals: NormalDetectors | None = None  # per-device learned normals, when enabled

    def connect(self, score_log: ScoreLog, raise_alert: RaiseAlert) -> None:
        """Where scores are recorded and candidates go (set at start, before scoring runs)."""
        self.score_log = score_log
        self._raise = raise_alert

    @property
    def model(self) -> WindowModel:
        return self.windows.model

    def use_model(self, model: WindowModel) -> None:
        """Score windows with ``model`` from the next pass on."""
        self.windows.use(model)

    def use_detector(self, replacement: PatternDetector) -> None:
        """Replace the detector of its device class; its debounce state stays."""
        self.patterns[replacement.device_class] = replacement
        self.pattern_policies[replacement.device_class].threshold = replacement.threshold

    async def run(self, stop: asyncio.Event, stride_s: float) -> None:
        while not await wait_or_stop(stop, stride_s):
            await self.score_now()

    async def score_now(self) -> int:
        """Score every window now (and the learned normals' readings since the last pass);
        return how many alerts were raised."""
        assert self.score_log is not None and self._raise is not None, "connect() first"
        scores = self.windows.score(time.time())
        self.metrics.windows.inc(len(scores))
        if scores:
            self.score_log.add([  # on the event loop: a few rows, and the alert path needs the lock
                (s.window_end, s.device, s.metric, s.count, s.mean, s.min, s.max, s.score, s.kind) for s in scores])
        raised = [(a, self.model.name) for a in self.policy.decide(scores)]
        now = time.time()
        for device_class, detector in self.patterns.items():
            pattern_scores = detector.score(now)
            self.metrics.windows.inc(len(pattern_scores))
            raised += [(a, detector.model.name) for a in self.pattern_policies[device_class].decide(pattern_scores)]
        if self.normals is not None:  # each reading since the last pass, scored with only the past
            raised += [(a, a.source) for a in await self.normals.run_pass()]
        for a, source in raised:
            await self._raise(a.raised_at, a.device, a.metric, a.kind, a.score, a.severity, source)
            log.warning("alert: device=%s metric=%s kind=%s score=%.3f", a.device, a.metric, a.kind, a.score)
        self.metrics.online.set(self.registry.online_count())
        return len(raised)
