"""The hub as an async context manager: the composition root of its components.

It builds each component, wires them through their interfaces, and owns the lifecycle:
one TaskGroup of named tasks, started in ``__aenter__``; on exit ingest stops first, the
pending rows are flushed, a final summary for the current interval is made and published,
and every database is closed. It does no work of its own.

Components (each in its own module, owning its state and its tables):

=====================  =================================  ===========================
component              module                             task
=====================  =================================  ===========================
ingest (validation)    hub.ingest, thresholds, rebirth    (called by the writer)
ingest writer          hub.writer                         hub-ingest, hub-writer
storage                hub.store                          (called by the writer)
retention              hub.retention                      hub-retention
scoring                hub.scoring                        hub-scorer
learned normals        hub.normals                        (in hub-scorer's pass)
model reload           hub.model_reload                   hub-models
alerting               hub.alerting                       (called by its sources)
work orders, SLA       hub.workorders                     hub-sla
device twin            hub.device_twin, hub.twin          hub-reconcile-<gateway>
device status          hub.device_status                  hub-status
city downlink          hub.city_downlink, hub.downlink    hub-downlink-answer-<seq>
summaries              hub.summaries                      hub-summary
residents' requests    hub.residents.requests             (API; anonymised by retention)
=====================  =================================  ===========================
"""

import asyncio
import time
from collections.abc import Coroutine
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from contract.endpoints import MqttEndpoint
from contract.topology import Community
from hub.accounts import Accounts
from hub.alerting import AlertLog, Alerting
from hub.city_downlink import CityDownlink
from hub.device_status import StatusWatch
from hub.device_twin import DeviceTwin
from hub.downlink import DownlinkStore
from hub.inference import WindowModel
from hub.ingest import Ingestor, Pending
from hub.metrics import HubMetrics
from hub.model_reload import ModelReload
from hub.normals import NormalDetectors, NormalStore
from hub.normals.metrics import NormalsCollector
from hub.patterns import NightHours, load_detectors
from hub.registry import Registry
from hub.residents.requests import Intake, Places, RequestStore
from hub.residents.requests.identity import Identity, load_or_create_key
from hub.residents.requests.metrics import RequestMetrics
from hub.residents.triage import Triager
from hub.residents.triage.keywords import KeywordTriage
from hub.retention import Retention
from hub.rules import CombinationRules
from hub.scoring import ScoreLog, Scoring
from hub.settings import HubSettings
from hub.store import HubStore
from hub.summaries import Summaries, SummaryStore
from hub.twin import TwinStore
from hub.workorders import AlertIntake, SlaTimer, WorkOrders
from hub.writer import IngestWriter
from servicekit.mqtt import MqttLink

if TYPE_CHECKING:
    from hub.influx import InfluxSink


class HubService:
    def __init__(self, settings: HubSettings, community: Community, mqtt: MqttEndpoint,
                 *, model: WindowModel | None = None, triager: Triager | None = None) -> None:
        self.settings = settings
        self.community = community
        self.started = time.time()
        self.metrics = HubMetrics()
        self.registry = Registry(community, offline_after_s=settings.offline_after_s)
        night = NightHours(*settings.night_hours, ZoneInfo(settings.timezone))
        self.scoring = Scoring(model or WindowModel(settings.model_dir), self.registry, self.metrics,
                               window_s=settings.window_s, threshold=settings.alert_threshold,
                               cooldown_s=settings.alert_cooldown_s,
                               patterns=load_detectors(settings.pattern_models, night))
        self.model_reload = ModelReload(self.scoring, settings.model_dir, self.metrics)
        self.ingestor = Ingestor(self.registry, self.scoring.windows, self.metrics,
                                 max_payload_bytes=settings.max_payload_bytes,
                                 rebirth_seq_gap=settings.rebirth_seq_gap,
                                 rebirth_min_interval_s=settings.rebirth_min_interval_s)
        self.ingestor.patterns = self.scoring.patterns  # the same dict: a detector replaced is fed at once
        self.normals: NormalDetectors | None = None
        if settings.normals.enabled:  # exported fits go next to the database (no I/O until the first fit)
            self.normals = NormalDetectors(settings.normals, NormalStore(settings.database.parent / "normals",
                                                                         settings.normals.keep_versions))
            self.scoring.normals = self.ingestor.normals = self.normals
            self.metrics.registry.register(NormalsCollector(self.normals))
        # Residents' requests are triaged by this (the keyword baseline until a trained model is given).
        self.triager: Triager = triager or KeywordTriage()
        self.request_metrics = RequestMetrics(self.metrics.registry)
        self.publisher = MqttLink(mqtt, client_id=f"{settings.client_id}-pub")  # summaries, alerts, commands
        self._mqtt = mqtt
        # Components that own tables are built in __aenter__ (no I/O in a constructor).
        self.store: HubStore | None = None
        self.accounts: Accounts | None = None
        self.workorders: WorkOrders | None = None
        self.residents: Intake | None = None
        self.writer: IngestWriter
        self.alerting: Alerting
        self.twin: DeviceTwin
        self.status: StatusWatch
        self.sla: SlaTimer
        self.downlink: CityDownlink
        self.summaries: Summaries
        self.retention: Retention
        self.influx: InfluxSink | None = None
        self._closing: list[Any] = []  # what holds a database connection, closed on exit
        self._stop = asyncio.Event()
        self._ingest_stop = asyncio.Event()
        self._ingest_task: asyncio.Task[None] | None = None
        self._tg: asyncio.TaskGroup | None = None

    async def _open(self, kind: Any) -> Any:
        db = await asyncio.to_thread(kind, self.settings.database)
        self._closing.append(db)
        return db

    # -- lifecycle -----------------------------------------------------------------

    async def __aenter__(self) -> "HubService":
        s, community = self.settings, self.community.id
        self.store = store = await self._open(partial(HubStore, dead_letters=s.dead_letters))
        self.metrics.watch_dead_letters(store.dead_letter_stats)
        self.accounts = accounts = await self._open(Accounts)
        self.workorders = orders = await self._open(partial(WorkOrders, timezone=s.timezone))
        request_store: RequestStore = await self._open(RequestStore)
        key = await asyncio.to_thread(load_or_create_key, s.database.parent / "residents.key")
        score_log: ScoreLog = await self._open(ScoreLog)
        alert_log: AlertLog = await self._open(AlertLog)
        summary_store: SummaryStore = await self._open(SummaryStore)
        twin_store: TwinStore = await self._open(TwinStore)
        downlink_store: DownlinkStore = await self._open(DownlinkStore)

        self.alerting = Alerting(alert_log, self.registry, CombinationRules(s.rules), self.metrics, self.publisher,
                                 community)
        self.alerting.listen(AlertIntake(orders, self.registry, self.metrics).on_alert)
        self.scoring.connect(score_log, self.alerting.raise_alert)
        self.sla = SlaTimer(orders, self.metrics, check_interval_s=s.sla_check_interval_s)
        self.twin = DeviceTwin(twin_store, self.registry, accounts, self.ingestor.thresholds, self.publisher,
                               community, publish_timeout_s=s.publish_timeout_s,
                               rebirth_min_interval_s=s.rebirth_min_interval_s)
        self.status = StatusWatch(twin_store, self.registry, self.alerting.raise_alert,
                                  offline_after_s=s.offline_after_s, planned_stop_grace_s=s.planned_stop_grace_s,
                                  started=self.started)

        async def order_counts(since: float, until: float) -> dict[str, Any]:
            return await asyncio.to_thread(orders.counts, since, until)

        self.summaries = Summaries(summary_store, self.registry, self.ingestor, self.alerting, order_counts,
                                   self.metrics, self.publisher, community, interval_s=s.summary_interval_s,
                                   late_grace_s=s.late_grace_s, revise_within_s=s.revise_within_s,
                                   rollups_s=s.summary_rollups_s, publish_timeout_s=s.publish_timeout_s)
        model_root = s.downlink_model_dir or s.database.parent / "downlink-models"
        self.downlink = CityDownlink(community, s.city_public_key, downlink_store, Path(model_root),
                                     self.summaries.apply_city_config, self.model_reload.load_from_city,
                                     self.metrics, self.publisher, publish_timeout_s=s.publish_timeout_s)
        await self.downlink.restore(keep_window_model=s.model_dir is not None)  # what the city set still holds
        await asyncio.to_thread(self.twin.restore)
        self.residents = Intake(request_store, orders, Places(self.community), self.triager, Identity(key),
                                s.residents, self.request_metrics, raise_alert=self.alerting.raise_resident_alert,
                                timezone=s.timezone, role_of=partial(_role_of, accounts))
        self.retention = Retention(store, score_log, s, anonymise=self.residents.anonymise_closed)
        if s.influx is not None:
            from hub.influx import InfluxSink  # influxdb-client only where a sink is configured

            self.influx = InfluxSink(s.influx, self.registry, self.metrics.influx_points)
            self._closing.append(self.influx)
        self.writer = IngestWriter(self._mqtt, s.client_id, self.ingestor, store, self.metrics, self._after_commit,
                                   ack_batch=s.ack_batch, queue_size=s.queue_size,
                                   write_interval_s=s.write_interval_s, influx=self.influx)
        self.metrics.restore(await asyncio.to_thread(store.counters))
        self.registry.restore_runs(await asyncio.to_thread(store.gateway_runs, Registry.MAX_ANNOUNCED_RUNS))

        self._tg = tg = asyncio.TaskGroup()
        await tg.__aenter__()
        stop = self._stop
        self._ingest_task = tg.create_task(self.writer.link.run(self._ingest_stop), name="hub-ingest")
        tg.create_task(self.publisher.run(stop), name="hub-publish")
        tg.create_task(self.writer.run(stop), name="hub-writer")
        tg.create_task(self.scoring.run(stop, s.stride_s), name="hub-scorer")
        tg.create_task(self.summaries.run(stop), name="hub-summary")
        tg.create_task(self.retention.run(stop, s.retention_interval_s), name="hub-retention")
        tg.create_task(self.status.run(stop), name="hub-status")
        tg.create_task(self.sla.run(stop), name="hub-sla")
        tg.create_task(self.model_reload.run(stop, s.model_poll_s), name="hub-models")
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        self._ingest_stop.set()  # stop taking messages first; the broker keeps the rest for us
        if self._ingest_task is not None:
            await asyncio.wait([self._ingest_task], timeout=10)
        try:
            await self.writer.flush()
            await self.summaries.close_interval(final=True)
            await self.writer.flush()  # the counters of that last summary
        finally:
            self._stop.set()
            assert self._tg is not None
            await self._tg.__aexit__(et, e, tb)
            for db in self._closing:
                await asyncio.to_thread(db.close)

    async def wait_ready(self, timeout: float = 10.0) -> None:
        await self.writer.link.wait_connected(timeout)
        await self.publisher.wait_connected(timeout)

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        assert self._tg is not None
        self._tg.create_task(coro, name=name)

    async def _after_commit(self, batch: Pending) -> None:
        """What a committed batch carries for the other components, before its PUBACKs."""
        self.summaries.count_dead(len(batch.dead))
        for ack_id, _, at, result, reason in batch.acks:
            await self.twin.acked(ack_id, result, reason, at)
        for crossing in batch.crossings:
            await self.alerting.threshold_crossed(*crossing)
        for raw in batch.downlinks:
            await self.downlink.answer(raw, self._spawn)
        for gateway, reason, detail in batch.rebirths:
            await self.twin.ask_rebirth(gateway, reason, detail)
        for gateway in {b[0] for b in batch.births}:
            self._spawn(self.twin.reconcile(gateway), f"hub-reconcile-{gateway}")

    # -- views for the API -----------------------------------------------------------

    def live_snapshot(self) -> dict[str, object]:
        """What a live page watches: any change here makes it refresh."""
        now = time.time()
        return {"online": sum(self.registry.online(d, now) for d in self.registry.devices.values()),
                "readings": sum(d.messages for d in self.registry.devices.values()),
                "alerts": self.metrics.totals["alerts"],
                "work_orders": self.workorders.version if self.workorders is not None else 0,
                "notices": self.downlink.counts["applied"]}

    def stats(self) -> dict[str, int]:
        t = self.metrics.totals
        return {
            "received_telemetry": t["received_telemetry"],
            "received_event": t["received_event"],
            "received_state": t["received_state"],
            "received_bytes": t["received_bytes"],
            "stored": t["stored"],
            "events_stored": t["events_stored"],
            "dead_lettered": t["dead_lettered"],
            "duplicates": t["duplicates"],
            # Telemetry from agent runs announced by a gateway birth, and from anyone else.
            "stored_announced": t["stored_announced"],
            "stored_unannounced": t["stored_unannounced"],
            "dead_announced_telemetry": t["dead_announced_telemetry"],
            "alerts": t["alerts"],
            "summaries": t["summaries"],
            "summary_revisions": t["summary_revisions"],
            "summary_rollups": t["summary_rollups"],
            "summary_rollup_revisions": t["summary_rollup_revisions"],
            "late_readings": t["late_readings"],
            "late_unsummarised": t["late_unsummarised"],
            "summary_publish_failures": t["summary_publish_failures"],
            # Points marked uncertain or bad (docs/protocol.md); rebirths asked and held back.
            "points_uncertain": t["points_uncertain"],
            "points_bad": t["points_bad"],
            "rebirth_requests": t["rebirth_requests"],
            "rebirths_held_back": t["rebirths_held_back"],
            "pending": len(self.ingestor.pending),
            "devices_online": self.registry.online_count(),
            "devices": len(self.registry.devices),
        }


def _role_of(accounts: Accounts, name: str) -> str | None:
    """A user's role (what residents see instead of a staff member's name)."""
    return next((u["role"] for u in accounts.users() if u["name"] == name), None)
