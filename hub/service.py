"""The hub as an async context manager: MQTT ingest, batched storage, scoring, summaries.

Tasks (one TaskGroup): ``hub-ingest`` (persistent MQTT session), ``hub-publish`` (summaries
and commands), ``hub-writer`` (batched SQLite writes), ``hub-scorer`` (windows -> model ->
alerts), ``hub-summary`` (interval summaries). On exit the pending rows are flushed and a
final summary for the current interval is published.
"""

import asyncio
import logging
import math
import time
from pathlib import Path
from collections import Counter
from types import TracebackType
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import aiomqtt

from contract import topics
from contract.classes import CATALOG, HOUSEHOLD_CLASSES
from contract.codec import decode_as, encode
from contract.endpoints import MqttEndpoint
from contract.downlink import ConfigChange, DownlinkAck
from contract.messages import Alert, Command, HubSummary, WorkOrderStats
from contract.topology import Community
from hub.accounts import Accounts
from hub.alerts import KIND_ZH, AlertPolicy
from hub.inference import ModelError, WindowModel
from hub.ingest import Ingestor
from hub.metrics import HubMetrics
from hub.patterns import NightHours, load_detectors
from hub.registry import Registry
from hub.rules import CombinationRules
from hub.settings import HubSettings, is_multiple
from hub.store import HubStore
from hub.downlink import DownlinkHandler, DownlinkStore
from hub.summary import build_summary, late_summary, revise, roll_up
from hub.twin import DesiredPatch, TwinStore, commands_for, merge, sync_state
from hub.workorders import WorkOrders, category_of_alert
from hub.windows import Windows
from servicekit.lifecycle import wait_or_stop
from servicekit.mqtt import MqttLink, NotConnected

if TYPE_CHECKING:
    from hub.influx import InfluxSink

log = logging.getLogger(__name__)


class HubService:
    def __init__(self, settings: HubSettings, community: Community, mqtt: MqttEndpoint,
                 *, model: WindowModel | None = None) -> None:
        self.settings = settings
        self.community = community
        self.metrics = HubMetrics()
        self.registry = Registry(community, offline_after_s=settings.offline_after_s)
        self.windows = Windows(model or WindowModel(settings.model_dir), settings.window_s)
        self.model_events: list[dict[str, object]] = []  # loads and refusals, newest last
        # The version of the configured model folder last loaded: a model the city sent stays
        # in use until that folder gets a new version.
        self._folder_sha = WindowModel.manifest_sha256(settings.model_dir)
        self.ingestor = Ingestor(self.registry, self.windows, self.metrics, max_payload_bytes=settings.max_payload_bytes,
                                 rebirth_seq_gap=settings.rebirth_seq_gap,
                                 rebirth_min_interval_s=settings.rebirth_min_interval_s)
        self.alert_policy = AlertPolicy(settings.alert_threshold, settings.alert_cooldown_s)
        self.rules = CombinationRules(settings.rules)
        night = NightHours(*settings.night_hours, ZoneInfo(settings.timezone))
        self.ingestor.patterns = load_detectors(settings.pattern_models, night)
        # One alert per incident: a leak is not raised again within its window (3 h).
        self.pattern_policies = {c: AlertPolicy(d.threshold, max(settings.alert_cooldown_s, d.window_s))
                                 for c, d in self.ingestor.patterns.items()}
        self.store: HubStore | None = None
        self.accounts: Accounts | None = None
        self.twin: TwinStore | None = None
        self.workorders: WorkOrders | None = None
        self.downlink_store: DownlinkStore | None = None
        self.downlink: DownlinkHandler | None = None
        self._started = time.time()
        self.influx: InfluxSink | None = None
        self._mqtt = mqtt
        self._stop = asyncio.Event()
        self._tg: asyncio.TaskGroup | None = None
        self._flushed = asyncio.Condition()
        self._interval_alerts: Counter[str] = Counter()
        self._interval_severity: Counter[str] = Counter()
        self._interval_household: Counter[str] = Counter()  # alerts on household devices, by type
        self._interval_household_severity: Counter[str] = Counter()
        self._interval_dead = 0
        # The first interval starts now (not on the aligned boundary), so that a restarted
        # hub never produces a second summary for a window it already summarised.
        self._interval_start = time.time()
        self._rollups_warned = False
        self._rebirths = 0  # rebirth commands sent, for their ids
        self._mark_late(self._interval_start)
        self._ingest_stop = asyncio.Event()
        self._ingest_task: asyncio.Task[None] | None = None
        # The summary task and the shutdown path both publish kept summaries: one at a time,
        # or the same summary could be published twice.
        self._publishing = asyncio.Lock()
        # Manual acknowledgement: a message's PUBACK goes out only after the transaction that
        # stores it (or its dead letter) has committed, so a hub killed at any moment loses
        # nothing the broker accepted; the broker redelivers, and the store's unique index
        # drops what was committed but not acknowledged.
        self.ingest = MqttLink(mqtt, client_id=settings.client_id, clean_session=False, manual_ack=True,
                               on_connect=self._subscribe, on_raw=self._on_raw)
        self._unacked: list[tuple[int, int, int]] = []  # (session, mid, qos) handled since the last flush
        self._flush_soon = asyncio.Event()
        self.publisher = MqttLink(mqtt, client_id=f"{settings.client_id}-pub")

    # -- lifecycle -----------------------------------------------------------------

    async def __aenter__(self) -> "HubService":
        self.store = await asyncio.to_thread(HubStore, self.settings.database)
        self.accounts = await asyncio.to_thread(Accounts, self.settings.database)
        self.twin = await asyncio.to_thread(TwinStore, self.settings.database)
        self.workorders = await asyncio.to_thread(WorkOrders, self.settings.database)
        self.downlink_store = await asyncio.to_thread(DownlinkStore, self.settings.database)
        model_root = self.settings.downlink_model_dir or self.settings.database.parent / "downlink-models"
        self.downlink = DownlinkHandler(self.community.id, self.settings.city_public_key, self.downlink_store,
                                        model_root, self._apply_city_config, self._load_city_model)
        # What the city set before a restart still holds.
        change = await asyncio.to_thread(self.downlink_store.latest_config)
        if change is not None:
            self._apply_city_config(change)
        folders = await asyncio.to_thread(self.downlink_store.latest_model_dirs, model_root)
        for name, folder in folders.items():
            if name == "window_anomaly" and self.settings.model_dir is not None:
                continue  # a model folder of the operator's own (hub.model_dir) wins
            try:
                self._load_city_model(name, folder)
            except Exception as exc:  # ModelError, or onnxruntime's: the shipped model stays
                log.error("the %s model the city sent last does not load any more (%s); the shipped one stays",
                          name, exc)
        for device in self.twin.devices_with_desired():
            self._apply_thresholds(device, self.twin.desired(device)[1])
        if self.settings.influx is not None:
            from hub.influx import InfluxSink  # influxdb-client only where a sink is configured

            self.influx = InfluxSink(self.settings.influx, self.registry, self.metrics.influx_points)
        self.metrics.restore(await asyncio.to_thread(self.store.counters))
        self.registry.restore_runs(await asyncio.to_thread(self.store.gateway_runs, Registry.MAX_ANNOUNCED_RUNS))
        self._tg = asyncio.TaskGroup()
        await self._tg.__aenter__()
        self._ingest_task = self._tg.create_task(self.ingest.run(self._ingest_stop), name="hub-ingest")
        self._tg.create_task(self.publisher.run(self._stop), name="hub-publish")
        self._tg.create_task(self._writer(), name="hub-writer")
        self._tg.create_task(self._scorer(), name="hub-scorer")
        self._tg.create_task(self._summaries(), name="hub-summary")
        self._tg.create_task(self._retention(), name="hub-retention")
        self._tg.create_task(self._status_watch(), name="hub-status")
        self._tg.create_task(self._sla_watch(), name="hub-sla")
        self._tg.create_task(self._model_watch(), name="hub-models")
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        self._ingest_stop.set()  # stop taking messages first; the broker keeps the rest for us
        if self._ingest_task is not None:
            await asyncio.wait([self._ingest_task], timeout=10)
        try:
            await self._flush()
            await self._publish_summary(final=True)
            await self._flush()  # the counters of that last summary
        finally:
            self._stop.set()
            assert self._tg is not None
            await self._tg.__aexit__(et, e, tb)
            if self.store is not None:
                await asyncio.to_thread(self.store.close)
            for db in (self.accounts, self.twin, self.workorders, self.downlink_store):
                if db is not None:
                    await asyncio.to_thread(db.close)
            if self.influx is not None:
                await asyncio.to_thread(self.influx.close)

    async def wait_ready(self, timeout: float = 10.0) -> None:
        await self.ingest.wait_connected(timeout)
        await self.publisher.wait_connected(timeout)

    # -- ingest ----------------------------------------------------------------------

    async def _subscribe(self, client: aiomqtt.Client) -> None:
        await client.subscribe(topics.filter_everything(), qos=1)

    def _on_raw(self, topic: str, payload: bytes, mid: int, qos: int) -> None:
        """Every message, straight from the MQTT read loop. No backpressure wait is needed:
        nothing is acknowledged before it is committed, so the broker never has more than
        its max_inflight_messages in our hands."""
        self.ingestor.handle(topic, payload)
        self.metrics.totals["received_bytes"] += len(payload)  # what the egress share is measured against
        self._unacked.append((self.ingest.session, mid, qos))
        if (len(self._unacked) >= self.settings.ack_batch or len(self.ingestor.pending) >= self.settings.queue_size
                or self.ingestor.pending.crossings):  # an alert waits for no timer
            self._flush_soon.set()

    async def _writer(self) -> None:
        """Flush every write_interval_s, or sooner when ack_batch messages await their PUBACK
        (the broker sends no more than its max_inflight_messages unacknowledged)."""
        stop = asyncio.create_task(self._stop.wait())
        try:
            while not self._stop.is_set():
                soon = asyncio.create_task(self._flush_soon.wait())
                await asyncio.wait([stop, soon], timeout=self.settings.write_interval_s,
                                   return_when=asyncio.FIRST_COMPLETED)
                soon.cancel()
                self._flush_soon.clear()
                if not self._stop.is_set():
                    await self._flush()
        finally:
            stop.cancel()

    async def _flush(self) -> None:
        batch = self.ingestor.take()
        to_ack, self._unacked = self._unacked, []  # exactly the messages in this batch (no await between)
        assert self.store is not None
        self.metrics.count("stored", len(batch.telemetry))
        self.metrics.count("events_stored", len(batch.events))
        deltas = self.metrics.take_deltas()
        if batch.telemetry or batch.events or batch.dead or deltas or batch.births:
            # Counters are committed with the rows they count: the totals survive restarts
            # and always agree with what is stored.
            # On the event loop, not a worker thread: a batch is a few milliseconds of SQLite, and a
            # worker would wait for the GIL on every row while the MQTT reader keeps it busy
            # (measured: batches of 30,000 and stalls of seconds). Reading pauses meanwhile,
            # which is the backpressure we want.
            written = self.store.write(batch.telemetry, batch.events, batch.dead, deltas, batch.births)
            if written.corrections:
                self.metrics.committed(written.corrections)
                self.metrics.duplicates.inc(written.telemetry_repeats + written.event_repeats)
            self.metrics.stored.inc(written.telemetry)
            if self.influx is not None:  # committed first: the sink never has what SQLite lacks
                self.influx.add(batch.telemetry)
            self._interval_dead += len(batch.dead)
        for ack in batch.acks:
            await asyncio.to_thread(self.store.add_ack, *ack)
            assert self.twin is not None
            ack_id, _, at, result, reason = ack
            if await asyncio.to_thread(self.twin.acked, ack_id, result, reason, at) and result != "ok":
                log.warning("command %s refused by the edge: %s %s", ack_id, result, reason)
        for ts, device, metric, value, bound, limit in batch.crossings:
            await self._raise(ts, device, metric, "rate_of_change" if bound == "rate" else "threshold", value,
                              "warning")
            log.warning("threshold: device=%s %s=%s beyond its %s limit %s", device, metric, value, bound, limit)
        for raw in batch.downlinks:
            await self._answer_city(raw)
        for gateway, reason, detail in batch.rebirths:
            await self._ask_rebirth(gateway, reason, detail)
        for gateway in {b[0] for b in batch.births}:
            assert self._tg is not None
            self._tg.create_task(self._reconcile(gateway), name=f"hub-reconcile-{gateway}")
        for session, mid, qos in to_ack:  # now safe: the broker may forget them
            self.ingest.ack(session, mid, qos)
        self.metrics.pending.set(len(self.ingestor.pending))
        async with self._flushed:
            self._flushed.notify_all()

    # -- retention ------------------------------------------------------------------------

    async def _retention(self) -> None:
        while not await wait_or_stop(self._stop, self.settings.retention_interval_s):
            await self.apply_retention(time.time())

    async def apply_retention(self, now: float) -> dict[str, int]:
        """Roll raw readings up to 1-minute and 1-hour aggregates, then delete what is past
        its retention. Runs on the event loop, like the writer, in bounded steps."""
        assert self.store is not None
        s, day = self.settings, 86400.0
        done = {"rolled_up_60s": self.store.roll_up(60), "rolled_up_3600s": self.store.roll_up(3600)}
        done.update(self.store.expire(now - s.retention_raw_days * day,
                                      {60: now - s.retention_minute_days * day, 3600: now - s.retention_hour_days * day},
                                      now - s.retention_dead_letter_days * day))
        if any(done.values()):
            log.info("retention: %s", ", ".join(f"{k} {v}" for k, v in done.items() if v))
        return done

    # -- scoring and alerts -------------------------------------------------------------

    async def _scorer(self) -> None:
        while not await wait_or_stop(self._stop, self.settings.stride_s):
            await self.score_now()

    async def score_now(self) -> int:
        """Score every window now; return how many alerts were raised."""
        scores = self.windows.score(time.time())
        self.metrics.windows.inc(len(scores))
        assert self.store is not None
        if scores:
            self.store.add_windows([  # on the event loop: a few rows, and the alert path needs the lock
                (s.window_end, s.device, s.metric, s.count, s.mean, s.min, s.max, s.score, s.kind) for s in scores])
        raised = [(a, self.model.name) for a in self.alert_policy.decide(scores)]
        now = time.time()
        for device_class, detector in self.ingestor.patterns.items():
            pattern_scores = detector.score(now)
            self.metrics.windows.inc(len(pattern_scores))
            raised += [(a, detector.model.name) for a in self.pattern_policies[device_class].decide(pattern_scores)]
        for a, source in raised:
            await self._raise(a.raised_at, a.device, a.metric, a.kind, a.score, a.severity, source)
            log.warning("alert: device=%s metric=%s kind=%s score=%.3f", a.device, a.metric, a.kind, a.score)
        self.metrics.online.set(self.registry.online_count())
        return len(raised)

    async def _raise(self, at: float, device: str, metric: str, kind: str, score: float, severity: str,
                     source: str = "rule") -> None:
        assert self.store is not None and self.workorders is not None
        # On the event loop, like the writer: one small insert, and no wait for a worker thread
        # (measured: that hop, behind the scorer's window inserts, was the tail of alert latency).
        alert_id = self.store.add_alert(at, device, metric, kind, score, severity, source)
        try:  # for whoever listens (the bridge, a control room); the record is in SQLite either way
            self.publisher.publish_nowait(topics.hub_alert(self.community.id), encode(Alert(
                id=alert_id, device=device, metric=metric, kind=kind, severity=severity, score=score, ts=at,
                raised_at=time.time())), qos=1)
        except NotConnected:
            self.metrics.count("alerts_not_published")
        self.metrics.alerts.labels(kind).inc()
        self.metrics.count("alerts")
        self._interval_alerts[kind] += 1
        self._interval_severity[severity] += 1
        state = self.registry.devices.get(device)
        if state is None:
            return
        if state.device_class in HOUSEHOLD_CLASSES:
            self._interval_household[kind] += 1
            self._interval_household_severity[severity] += 1
        if kind != "combined":
            for combined in self.rules.observe(at, device, state.building, state.device_class, metric, kind):
                rule = combined.rule
                log.warning("combined: rule=%s %s=%s devices=%s", rule.name, rule.scope, combined.scope_key,
                            ",".join(combined.devices))
                await self._raise(at, combined.devices[-1], rule.name, "combined", 1.0, rule.severity,
                                  f"rule:{rule.name}")
        spec = CATALOG[state.device_class]
        described = spec.metric(metric)
        label = described.label_zh if described is not None else ("" if kind == "offline" else metric)
        what, category = KIND_ZH.get(kind, kind), category_of_alert(kind, state.device_class)
        if kind == "combined":
            rule = next(r for r in self.rules.rules if r.name == metric)
            label, what, category = "", rule.label_zh, rule.category or category
        order, created = await asyncio.to_thread(
            self.workorders.from_alert, alert_key=f"{device}:{metric}:{kind}", category=category,
            title=f"{state.name or device}：{label}{what}",
            building=state.building, device=device, severity=severity, detail=f"{metric}={score:g} ({kind})", now=at)
        if created:
            self.metrics.count("work_orders_opened")
            log.info("work order %d opened for alert %s/%s/%s", order, device, metric, kind)

    @property
    def model(self) -> WindowModel:
        return self.windows.model

    async def _model_watch(self) -> None:
        while not await wait_or_stop(self._stop, self.settings.model_poll_s):
            await self.reload_model()

    async def reload_model(self) -> dict[str, object]:
        """Load the model folder's current version if it is new: verified and built off the
        event loop, then swapped in between two scoring passes. A version that fails its
        checks is refused, with the reason, and the running model stays."""
        announced = WindowModel.manifest_sha256(self.settings.model_dir)
        if announced is None or announced in (self.model.sha256, self._folder_sha):
            return {"loaded": False, "model": self.model.name}
        try:
            new = await asyncio.to_thread(WindowModel, self.settings.model_dir)
        except ModelError as exc:
            if not self.model_events or self.model_events[-1].get("reason") != str(exc):  # once per bad version
                self.metrics.count("model_refused")
                log.error("new model refused, still scoring with %s: %s", self.model.name, exc)
                self.model_events.append({"at": time.time(), "event": "refused", "reason": str(exc)})
            return {"loaded": False, "model": self.model.name, "refused": str(exc)}
        previous = self.model.name
        self.windows.use(new)
        self._folder_sha = new.sha256
        self.metrics.count("model_loads")
        self.model_events.append({"at": time.time(), "event": "loaded", "model": new.name, "sha256": new.sha256,
                                  "previous": previous})
        log.warning("model %s replaced by %s (sha256 %s)", previous, new.name, new.sha256[:12])
        return {"loaded": True, "model": new.name, "previous": previous}

    # -- the city's items (from the bridge) ---------------------------------------------------

    def _apply_city_config(self, change: ConfigChange) -> None:
        if change.summary_interval_s is not None and change.summary_interval_s != self.settings.summary_interval_s:
            log.warning("summary interval set by the city: %.0f s (was %.0f s), from the next window",
                        change.summary_interval_s, self.settings.summary_interval_s)
            self.settings = self.settings.model_copy(update={"summary_interval_s": change.summary_interval_s})

    def _load_city_model(self, name: str, folder: Path) -> str:
        # ModelError if it does not load, its hash is not its manifest's, or (a pattern model)
        # it reads other metrics than the detector it replaces.
        if name == "window_anomaly":
            new = WindowModel(folder)
            previous = self.model.name
            self.windows.use(new)
        else:
            detector = next((d for d in self.ingestor.patterns.values() if d.name == name), None)
            if detector is None:
                raise ModelError(f"this hub does not run the {name} detector (hub.pattern_models)")
            replacement = detector.replaced_by(folder)
            new, previous = replacement.model, detector.model.name
            self.ingestor.patterns[replacement.device_class] = replacement
            self.pattern_policies[replacement.device_class].threshold = replacement.threshold  # its debounce stays
        self.metrics.count("model_loads")
        self.model_events.append({"at": time.time(), "event": "loaded", "model": new.name, "sha256": new.sha256,
                                  "previous": previous, "from": "city"})
        log.warning("model %s replaced by %s from the city (sha256 %s)", previous, new.name, new.sha256[:12])
        return new.name

    async def _answer_city(self, raw: bytes) -> None:
        assert self.downlink is not None
        ack = await asyncio.to_thread(self.downlink.handle, raw) if len(raw) > 64 * 1024 else self.downlink.handle(raw)
        if ack is None:
            self.metrics.count("downlink_unreadable")
            return
        self.metrics.count(f"downlink_{ack.status}")
        assert self._tg is not None  # the answer is kept: its publishing need not hold up the writer
        self._tg.create_task(self._publish_answer(ack), name=f"hub-downlink-answer-{ack.seq}")

    async def _publish_answer(self, ack: DownlinkAck) -> None:
        try:
            await self.publisher.publish(topics.hub_downlink_ack(self.community.id), ack.model_dump_json().encode(),
                                         qos=1, timeout=self.settings.publish_timeout_s)
        except (NotConnected, TimeoutError, aiomqtt.MqttError) as exc:
            # The bridge hands the item again when no answer comes, and gets the kept answer.
            log.error("answer to city item %d not published (%s); the bridge will ask again", ack.seq, exc)

    async def _sla_watch(self) -> None:
        """Escalate work orders past their category's SLA, once each."""
        assert self.workorders is not None
        while not await wait_or_stop(self._stop, self.settings.sla_check_interval_s):
            for order in await asyncio.to_thread(self.workorders.escalate_overdue):
                self.metrics.count("work_orders_escalated")
                log.warning("work order %d (%s, %s) is past its SLA and unresolved: escalated", order["id"],
                            order["category"], order["title"])

    # -- device twin ------------------------------------------------------------------------

    def _apply_thresholds(self, device: str, doc: dict[str, object]) -> None:
        limits = doc.get("thresholds") or {}
        assert isinstance(limits, dict)
        self.ingestor.thresholds[device] = {m: (t.get("low"), t.get("high"), t.get("rate_per_min"))
                                            for m, t in limits.items()}

    async def set_desired(self, device_id: str, patch: DesiredPatch, actor: str) -> dict[str, object]:
        """Change a device's desired state and send what the edge must do; KeyError, TwinError."""
        assert self.twin is not None and self.accounts is not None
        device = self.registry.devices[device_id]
        _, current, _, _ = self.twin.desired(device_id)
        doc = merge(device, current, patch)
        version = await asyncio.to_thread(self.twin.set_desired, device_id, doc, actor)
        await asyncio.to_thread(self.accounts.audit, actor, "device.desired", f"device:{device_id}",
                                {"patch": patch.model_dump(exclude_unset=True), "version": version})
        self._apply_thresholds(device_id, doc)
        commands = commands_for(device, doc, current)
        if commands:
            await self._send(device_id, version, commands, actor)
        return self.twin_view(device_id)

    async def _send(self, device_id: str, version: int, commands: list[dict[str, object]], actor: str) -> None:
        """Record a round of commands and publish them; a gateway that is offline gets the
        whole desired state when it is next born."""
        assert self.twin is not None
        device = self.registry.devices[device_id]
        issued: list[Command] = await asyncio.to_thread(self.twin.issue, device, version, commands, actor)
        if not self.registry.gateways[device.gateway].online:
            log.info("gateway %s offline: %d commands for %s wait for its next birth", device.gateway,
                     len(issued), device_id)
            return
        for cmd in issued:
            try:
                await self.publisher.publish(topics.gateway_command(self.community.id, device.gateway), encode(cmd),
                                             qos=1, timeout=self.settings.publish_timeout_s)
            except (NotConnected, TimeoutError, aiomqtt.MqttError) as exc:
                log.error("command %s to %s not sent (resent at the gateway's next birth): %s", cmd.id,
                          device.gateway, exc)
                return
            await asyncio.to_thread(self.twin.sent, cmd.id)

    async def _ask_rebirth(self, gateway: str, reason: str, detail: str) -> None:
        """Publish a rebirth command to ``gateway``: its agent publishes its birth again and
        reports every point on its next read, so the registry and the twin catch up."""
        self._rebirths += 1
        cmd = Command(id=f"rebirth-{int(time.time())}-{self._rebirths}", ts=time.time(), command="rebirth")
        log.warning("asking gateway %s for a rebirth (%s): %s", gateway, reason, detail)
        try:
            await self.publisher.publish(topics.gateway_command(self.community.id, gateway), encode(cmd), qos=1,
                                         timeout=self.settings.publish_timeout_s)
        except (NotConnected, TimeoutError, aiomqtt.MqttError) as exc:
            log.error("rebirth request to %s not sent (asked again on its next message after %g s): %s", gateway,
                      self.settings.rebirth_min_interval_s, exc)

    async def _reconcile(self, gateway: str) -> None:
        """A gateway was born: send each of its devices' whole edge-side desired state."""
        assert self.twin is not None
        for device_id in await asyncio.to_thread(self.twin.devices_with_desired):
            device = self.registry.devices.get(device_id)
            if device is None or device.gateway != gateway:
                continue
            version, doc, _, _ = self.twin.desired(device_id)
            commands = commands_for(device, doc, None)
            if commands:
                await self._send(device_id, version, commands, "hub:reconcile")

    def twin_view(self, device_id: str) -> dict[str, object]:
        assert self.twin is not None
        device = self.registry.devices[device_id]
        version, doc, set_by, set_at = self.twin.desired(device_id)
        commands = self.twin.commands(device_id, 20)
        gateway = self.registry.gateways[device.gateway]
        return {
            "device": device_id,
            "desired": {"version": version, "set_by": set_by, "set_at": set_at, **doc},
            "reported": {"online": self.registry.online(device), "gateway_online": gateway.online,
                         "last_seen": device.last_seen, "last_values": device.last_values},
            "sync": sync_state(commands),
            "commands": commands,
        }

    async def _status_watch(self) -> None:
        """Record each device's changes between online and offline, with the reason."""
        assert self.twin is not None
        last = await asyncio.to_thread(self.twin.last_status)
        # Devices that were reporting when their gateway announced a planned stop, by gateway:
        # alarmed only if the gateway stays away longer than planned_stop_grace_s.
        planned: dict[str, list[str]] = {}
        while not await wait_or_stop(self._stop, 1.0):
            now = time.time()
            for d in self.registry.devices.values():
                online = self.registry.online(d, now)
                if last.get(d.id) == online:
                    continue
                if not online and now - self._started < self.settings.offline_after_s:
                    continue  # just started: its devices' readings may not have arrived yet
                gateway = self.registry.gateways[d.gateway]
                if online:
                    reason = "reporting"
                elif not gateway.online:
                    # A planned stop (the agent said so) is recorded, not alarmed at once: an
                    # engineer's restart of a gateway would raise one alert per device behind it.
                    reason = "gateway-stopped" if gateway.stopped_cleanly else "gateway-offline"
                else:
                    reason = "never-heard" if d.last_seen is None else "stale"
                await asyncio.to_thread(self.twin.status_change, d.id, now, online, reason)
                if not online and reason in ("stale", "gateway-offline") and last.get(d.id) is True:
                    # A device that was reporting and stopped: someone should look (one alert a drop).
                    await self._raise(now, d.id, "status", "offline", 0.0, "warning")
                if reason == "gateway-stopped" and last.get(d.id) is True:
                    planned.setdefault(d.gateway, []).append(d.id)
                last[d.id] = online
            for gateway_id in list(planned):
                gateway = self.registry.gateways[gateway_id]
                if gateway.online:
                    del planned[gateway_id]  # back in time: nothing to raise
                elif now - (gateway.changed_at or now) >= self.settings.planned_stop_grace_s:
                    for device_id in planned.pop(gateway_id):
                        await self._raise(now, device_id, "status", "offline", 0.0, "warning")

    # -- summaries -------------------------------------------------------------------------

    def _align(self, t: float) -> float:
        step = self.settings.summary_interval_s
        return math.floor(t / step) * step

    async def _summaries(self) -> None:
        await self.publish_kept_summaries()  # what an earlier run could not publish
        while True:
            next_end = self._align(self._interval_start) + self.settings.summary_interval_s
            if await wait_or_stop(self._stop, max(0.0, next_end - time.time())):
                return
            await self._publish_summary(final=False)

    async def _publish_summary(self, *, final: bool) -> None:
        now = time.time()
        start = self._interval_start
        end = now if final else self._align(start) + self.settings.summary_interval_s
        ing = self.ingestor
        orders = None
        if self.workorders is not None:
            counts = await asyncio.to_thread(self.workorders.counts, start)
            orders = WorkOrderStats(**counts)
        summary = build_summary(self.registry, start, end, ing.interval_stats, ing.interval_readings,
                                self._interval_alerts, ing.interval_events, self._interval_dead,
                                alerts_by_severity=self._interval_severity, requests=ing.interval_requests,
                                work_orders=orders, household_alerts=self._interval_household,
                                household_alerts_by_severity=self._interval_household_severity,
                                quality=ing.interval_quality)
        ing.interval_stats, ing.interval_readings, ing.interval_events, ing.interval_requests = {}, {}, {}, {}
        ing.interval_quality = {}
        self._interval_alerts = Counter()
        self._interval_severity = Counter()
        self._interval_household = Counter()
        self._interval_household_severity = Counter()
        self._interval_dead = 0
        self._interval_start = end
        self._mark_late(end)
        assert self.store is not None
        # Kept in SQLite until the broker accepts it: a hub restarted while the broker is
        # unreachable still publishes every summary it produced.
        await asyncio.to_thread(self.store.keep_summary, summary.window_start, encode(summary), summary.window_end,
                                self.settings.revise_within_s)
        await self._revise_late()
        if not final:
            await self._roll_up(end)
        await self.publish_kept_summaries()

    def _mark_late(self, interval_start: float) -> None:
        """From now on, readings older than the current window (by more than the grace) revise
        the summary of their own window."""
        ing = self.ingestor
        ing.summary_step = self.settings.summary_interval_s
        ing.late_before = interval_start - self.settings.late_grace_s
        ing.revise_after = time.time() - self.settings.revise_within_s + self.settings.summary_interval_s

    async def _revise_late(self) -> None:
        """Late readings gathered in the interval just closed: a new revision of each window
        they belong to (same key at the bridge and the city, the next revision number)."""
        assert self.store is not None
        step = self.settings.summary_interval_s
        touched: set[tuple[int, float]] = set()  # roll-up windows holding a revised window
        for window, stats, readings, quality in self.ingestor.take_late():
            late = late_summary(self.registry, window, window + step, stats, readings, quality)
            body = await asyncio.to_thread(self.store.kept_summary, window, window + step)
            kept = decode_as(HubSummary, body) if body is not None else None
            revised = revise(kept, late)
            await asyncio.to_thread(self.store.keep_summary, revised.window_start, encode(revised),
                                    revised.window_end, self.settings.revise_within_s)
            self.metrics.count("summaries_revised" if kept is not None else "summaries_from_late_data")
            log.info("summary of window %.0f revised with %d late readings (revision %d)", revised.window_start,
                     sum(readings.values()), revised.revision)
            touched.update((p, math.floor(revised.window_start / p) * p) for p in self._rollup_periods())
        # Each roll-up made already that holds a revised window: revised once, however many of
        # its windows a replay revised.
        for period, start in sorted(touched):
            body = await asyncio.to_thread(self.store.kept_rollup, period, start)
            if body is not None:
                await self._make_rollup(period, start, decode_as(HubSummary, body))

    def _rollup_periods(self) -> list[int]:
        """The roll-ups to make: those that are whole multiples of the interval (the city may
        have changed the interval since the configuration was checked)."""
        step = self.settings.summary_interval_s
        periods = [p for p in self.settings.summary_rollups_s if is_multiple(p, step) and p > step]
        if len(periods) != len(self.settings.summary_rollups_s) and not self._rollups_warned:
            self._rollups_warned = True
            log.warning("summary roll-ups %s are not whole multiples of the summary interval (%g s) and are not "
                        "made", sorted(set(self.settings.summary_rollups_s) - set(periods)), step)
        return periods

    async def _roll_up(self, upto: float) -> None:
        """Make every roll-up window that has ended by ``upto`` (within revise_within_s) and
        has interval summaries kept but no roll-up yet: at its end, or after a hub that was
        down then comes back."""
        assert self.store is not None
        for period in self._rollup_periods():
            due = await asyncio.to_thread(self.store.rollups_due, period, upto,
                                          time.time() - self.settings.revise_within_s)
            for start in due:
                await self._make_rollup(period, start, None)

    async def _make_rollup(self, period: int, start: float, kept: HubSummary | None) -> None:
        """The roll-up of [start, start + period) from the interval summaries kept for it: the
        first, or (``kept``) the next revision of one made before, whose work-order counts stay."""
        assert self.store is not None
        end = start + period
        parts = [decode_as(HubSummary, b) for b in await asyncio.to_thread(self.store.kept_summaries_in, start, end)]
        if not parts:
            return
        orders = kept.work_orders if kept is not None else parts[-1].work_orders
        if kept is None and self.workorders is not None and orders is not None:
            # Opened and resolved over the whole window (medians do not add up); overdue as
            # the last interval saw it, at the window's end.
            counts = await asyncio.to_thread(self.workorders.counts, start, end)
            orders = WorkOrderStats(**{**counts, "overdue": orders.overdue})
        rollup = roll_up(parts, start, end, period, orders, revision=kept.revision + 1 if kept is not None else 0)
        await asyncio.to_thread(self.store.keep_rollup, period, start, end, encode(rollup),
                                self.settings.revise_within_s)
        self.metrics.count("summary_rollups" if kept is None else "summary_rollup_revisions")
        log.info("roll-up of %d s from %.0f made from %d summaries (revision %d)", period, start, len(parts),
                 rollup.revision)

    async def publish_kept_summaries(self) -> None:
        """Publish, oldest first, every summary the broker has not yet accepted."""
        async with self._publishing:
            await self._publish_kept()

    async def _publish_kept(self) -> None:
        assert self.store is not None
        for window_start, body in await asyncio.to_thread(self.store.unpublished_summaries):
            if not await self._publish_summary_body(body, f"summary of window {window_start:.0f}"):
                return
            await asyncio.to_thread(self.store.summary_published, window_start)
            self.metrics.summaries.inc()
            self.metrics.count("summaries")
            if decode_as(HubSummary, body).revision:
                self.metrics.count("summary_revisions")  # published again under its key
        for period, window_start, body in await asyncio.to_thread(self.store.unpublished_rollups):
            if not await self._publish_summary_body(body, f"roll-up of {period} s from {window_start:.0f}"):
                return
            await asyncio.to_thread(self.store.rollup_published, period, window_start, body)

    async def _publish_summary_body(self, body: bytes, what: str) -> bool:
        """Publish a kept summary (QoS 1); False, counted and logged, if the broker did not take it."""
        try:
            await self.publisher.publish(topics.hub_summary(self.community.id), body, qos=1,
                                         timeout=self.settings.publish_timeout_s)
        except (NotConnected, TimeoutError, aiomqtt.MqttError) as exc:
            self.metrics.count("summary_publish_failures")
            log.error("%s not published yet (kept for the next attempt): %s", what, exc)
            return False
        return True

    def live_snapshot(self) -> dict[str, object]:
        """What a live page watches: any change here makes it refresh."""
        now = time.time()
        return {"online": sum(self.registry.online(d, now) for d in self.registry.devices.values()),
                "readings": sum(d.messages for d in self.registry.devices.values()),
                "alerts": self.metrics.totals["alerts"],
                "work_orders": self.workorders.version if self.workorders is not None else 0,
                "notices": self.downlink.counts["applied"] if self.downlink is not None else 0}

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

