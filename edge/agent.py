"""The edge agent of one gateway: read local devices, publish the contract upstream.

Tasks: ``uplink`` (MQTT to the hub's broker, with birth on connect and death as Last
Will), ``devices`` (MQTT subscription to the gateway's local devices), one ``bus-<port>``
poller per serial bus (device profiles, or the community's serial devices), ``sender``
(QoS 1 with a window of messages in flight: live readings first, then the disk spool's
backlog, marked historical), and ``health``.

Store and forward: whatever cannot go up now (no connection, or more live readings than
the live queue holds) goes to the disk spool, and so does whatever is unsent at exit.
"""

import asyncio
import importlib.metadata
import json
import logging
import secrets
import shutil
import time
from array import array
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import aiomqtt
import psutil
from pydantic import BaseModel, ValidationError

from contract import topics
from contract.codec import (
    BACKLOG_MAX_BUNDLE_BYTES,
    DecodeError,
    decode_as,
    encode,
    pack_backlog,
)
from contract.endpoints import MqttEndpoint
from contract.messages import (
    Ack,
    Birth,
    Command,
    Death,
    DeviceInfo,
    Event,
    QUALITY_LEVELS,
    GatewayHealth,
    Telemetry,
)
from contract.topology import Community, DeviceSpec
from edge.deadletter import DeadLetterFile
from edge.normalize import RawRejected, mark_out_of_range, parse_raw, spec_for
from edge.poller import BusPoller, CommandRefused
from edge.profiles import BusFile, BusSpec, DeviceEntry, ModelSpec, PointSpec
from edge.settings import EdgeSettings
from edge.spool import Position, Record, Spool
from servicekit.lifecycle import wait_or_stop
from servicekit.mqtt import MqttLink, NotConnected
from servicekit.throttle import LogThrottle

log = logging.getLogger(__name__)

LIVE, REPLAY = 0, 1


class LatencyWindow:
    """The last ``size`` latencies, in a fixed array of doubles (80 KB for 10,000; a deque
    of float objects is 3.5 times that, and grows to it over a long run)."""

    def __init__(self, size: int) -> None:
        self._values = array("d", bytes(8 * size))
        self._next = 0
        self._count = 0

    def append(self, value: float) -> None:
        self._values[self._next] = value
        self._next = (self._next + 1) % len(self._values)
        self._count = min(self._count + 1, len(self._values))

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[float]:
        return iter(self._values[: self._count] if self._count < len(self._values) else self._values)


def _bundles(records: list[Record], size: int) -> list[list[Record]]:
    """Consecutive runs of at most ``size`` records and BACKLOG_MAX_BUNDLE_BYTES of payload."""
    out: list[list[Record]] = []
    current: list[Record] = []
    nbytes = 0
    for rec in records:
        if current and (len(current) >= size or nbytes + len(rec.payload) > BACKLOG_MAX_BUNDLE_BYTES):
            out.append(current)
            current, nbytes = [], 0
        current.append(rec)
        nbytes += len(rec.payload) + len(rec.topic) + 32
    if current:
        out.append(current)
    return out


def _software_version() -> str:
    try:
        return f"midbrain-edge/{importlib.metadata.version('midbrain')}"
    except importlib.metadata.PackageNotFoundError:
        return "midbrain-edge/dev"


@dataclass(slots=True)
class _Out:
    topic: str
    payload: bytes
    retain: bool
    message: BaseModel | None  # kept for live messages, to re-encode as historical if they must be spooled
    reading: bool
    enqueued: float


def serial_device_buses(community: Community, gateway_id: str, ports: dict[str, str]) -> list[BusFile]:
    """The community configuration's own serial devices (PMS5003), as one-device buses."""
    buses = []
    for d in community.devices_of(gateway_id):
        if d.serial is None:
            continue
        port = ports.get(d.id) or d.serial.port
        if not port:
            log.error("device %s: no serial port configured (community.devices.serial.port or --serial-port "
                      "%s=PATH); not polled", d.id, d.id)
            continue
        model = ModelSpec.model_validate({"class": d.device_class, "interval_s": d.interval_s, "report": "every_poll",
                                          "points": [PointSpec(name=m) for m in ("pm1_0", "pm2_5", "pm10")]})
        buses.append(BusFile(gateway=gateway_id, models={"pms5003": model},
                             bus=BusSpec(protocol=d.serial.protocol, port=port,
                                         baudrate=d.serial.baudrate, timeout_s=d.serial.timeout_s),
                             devices=(DeviceEntry(id=d.id, model="pms5003", name=d.name),)))
    return buses


class EdgeAgent:
    def __init__(self, community: Community, gateway_id: str, mqtt: MqttEndpoint, settings: EdgeSettings,
                 *, serial_ports: dict[str, str] | None = None, buses: list[BusFile] | None = None) -> None:
        self.community = community
        self.gateway = community.gateway(gateway_id)
        self.devices: dict[str, DeviceSpec] = {d.id: d for d in community.devices_of(gateway_id) if d.serial is None}
        self.settings = settings
        self.boot = f"{int(time.time() * 1000):x}-{secrets.token_hex(3)}"
        self._seq = 0
        all_buses = serial_device_buses(community, gateway_id, serial_ports or {}) + \
            [b for b in (buses or []) if b.gateway == gateway_id]
        self.pollers = [BusPoller(b, self._publish_reading, self._publish_device_event) for b in all_buses]
        self._bus_of: dict[str, BusPoller] = {d: p for p in self.pollers for d in p.devices}
        self._classes = {d.id: d.device_class for d in self.devices.values()}
        self._classes.update({e.id: b.model_of(e).device_class for b in all_buses for e in b.devices})
        self._live: deque[_Out] = deque()
        # mid -> kind, live message, or (spool position after the last record, records) of a backlog bundle
        self._inflight: dict[int, tuple[int, _Out | None, tuple[Position, int] | None]] = {}
        self._replay_order: deque[tuple[Position, int]] = deque()  # backlog bundles in send order
        self._replay_acked: set[Position] = set()  # of those, the ones acknowledged out of order so far
        self._replaying = 0  # records in the bundles of _replay_order
        self._wake = asyncio.Event()
        self._log_throttle = LogThrottle()
        self.counters: dict[str, int] = {"published": 0, "readings_published": 0, "replayed": 0, "spooled": 0,
                                         "spool_refused": 0, "rejected": 0, "commands": 0, "resent_after_drop": 0,
                                         "local_redelivered": 0, "marked_bad": 0}
        # QoS 1 from devices is at-least-once: around a broker restart the local broker may hand over a
        # message twice, and each copy would get its own seq (which the hub's dedup cannot catch). A
        # device never sends two identical payloads stamped with the same time, so those are dropped here.
        self._recent_local: dict[str, deque[bytes]] = {}
        self.live_latency = LatencyWindow(10_000)  # seconds from enqueue to PUBACK, live only
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        self.dead_letters = DeadLetterFile(settings.state_dir / f"{gateway_id}-dead-letters.jsonl")
        self.spool = Spool(settings.state_dir / f"{gateway_id}-spool", max_bytes=settings.spool_max_mb * 1024 * 1024,
                           max_age_s=settings.spool_max_age_h * 3600, full_policy=settings.spool_full_policy,
                           fsync=settings.spool_fsync, segment_bytes=min(8 * 1024 * 1024,
                                                                         settings.spool_max_mb * 1024 * 1024 // 4))
        c, g = community.id, gateway_id
        self._state_topic = topics.gateway_state(c, g)
        self._backlog_topic = topics.gateway_backlog(c, g)
        will = aiomqtt.Will(self._state_topic, encode(Death(boot=self.boot)), qos=1, retain=True)
        self.uplink = MqttLink(mqtt, client_id=f"edge-{c}-{g}", will=will, on_connect=self._on_uplink_connect,
                               on_message=self._on_command, on_ack=self._acked, on_down=self._uplink_down,
                               max_inflight=0)  # unlimited in paho: the sender keeps the window itself
        local = settings.device_broker or mqtt
        self._local_filter = f"{settings.device_topic_prefix}/{g}/+"
        # Persistent session: readings that devices publish while the agent restarts wait in the broker.
        self.local = MqttLink(local, client_id=f"edge-{c}-{g}-local", clean_session=False,
                              on_connect=self._on_local_connect,
                              on_message=self._on_local_message)
        self._process = psutil.Process()

    # -- lifecycle ---------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop``; then stop reading devices, drain what it can, spool the rest."""
        sources_stop, uplink_stop = asyncio.Event(), asyncio.Event()
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.uplink.run(uplink_stop), name="uplink")
                if self.devices:
                    tg.create_task(self.local.run(sources_stop), name="devices")
                for poller in self.pollers:
                    tg.create_task(poller.run(sources_stop), name=f"bus-{poller.spec.link}")
                tg.create_task(self._health(sources_stop), name="health")
                sender = tg.create_task(self._sender(uplink_stop), name="sender")
                await stop.wait()
                sources_stop.set()
                await self._drain(self.settings.flush_timeout_s)
                try:
                    await self.uplink.publish(self._state_topic, encode(Death(boot=self.boot, clean=True)),
                                              retain=True, timeout=2)
                except (NotConnected, TimeoutError) as exc:
                    log.warning("gateway %s: clean death not published (%s); the Last Will stands in",
                                self.gateway.id, exc)
                uplink_stop.set()
                self._wake.set()
                await sender
        finally:
            self._spool_leftovers()
            self.spool.close()

    async def _drain(self, timeout: float) -> None:
        """Wait for live messages to be acknowledged (the spool's backlog can wait for the next run)."""
        deadline = time.monotonic() + timeout
        while (self._live or any(k == LIVE for k, _, _ in self._inflight.values())) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)

    def _spool_leftovers(self) -> None:
        left = [o for k, o, _ in self._inflight.values() if k == LIVE and o is not None] + list(self._live)
        self._inflight.clear()
        self._live.clear()
        for out in left:
            self._spill(out)
        if left:
            self.counters["spooled_at_exit"] = len(left)
            log.warning("gateway %s: %d messages not acknowledged at exit were spooled for the next run",
                        self.gateway.id, len(left))

    def stats(self) -> dict[str, Any]:
        lat = sorted(self.live_latency)
        return {**self.counters, "live_queued": len(self._live), "inflight": len(self._inflight),
                "spool": self.spool.stats(), "dead_letters": self.dead_letters.count, "boot": self.boot,
                "live_latency_p99_ms": round(lat[int(len(lat) * 0.99) - 1] * 1000, 2) if lat else None,
                "buses": {p.spec.link: {**p.counters, "errors": p.error_counts()} for p in self.pollers}}

    # -- uplink ------------------------------------------------------------------------

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    async def _on_uplink_connect(self, client: aiomqtt.Client) -> None:
        await client.subscribe(topics.filter_gateway_commands(self.community.id, self.gateway.id), qos=1)
        if self.devices:  # born means "reading my devices": wait (bounded) for the local device link
            try:
                await self.local.wait_connected(self.settings.birth_wait_s)
            except TimeoutError:
                log.warning("gateway %s: local device broker not reachable; announcing birth anyway", self.gateway.id)
        await client.publish(self._state_topic, encode(self._birth()), qos=1, retain=True)
        self._wake.set()

    def _birth(self) -> Birth:
        return Birth(ts=time.time(), boot=self.boot, seq=self._next_seq(), software=_software_version(),
                     devices=tuple(DeviceInfo.model_validate({"id": d, "class": c}) for d, c in self._classes.items()))

    def enqueue(self, topic: str, message: BaseModel, *, retain: bool = False) -> None:
        """Queue a message for the hub: live if the link is up and the live queue has room, else to disk."""
        reading = isinstance(message, Telemetry)
        if not self.uplink.connected and not retain:  # encoded once, by _spill, as historical
            self._spill(_Out(topic, b"", retain, message, reading, time.monotonic()))
            return
        out = _Out(topic, encode(message), retain, message, reading, time.monotonic())
        if len(self._live) >= self.settings.live_queue:
            self._spill(self._live.popleft())
        self._live.append(out)
        self._wake.set()

    def _spill(self, out: _Out) -> None:
        """Put a message in the disk spool, marked historical; retained state is never spooled."""
        if out.retain:
            return
        if isinstance(out.message, Telemetry) and not out.message.hist:
            payload = encode(out.message.model_copy(update={"hist": True}))
        else:
            payload = out.payload or encode(out.message)  # type: ignore[arg-type]
        if self.spool.append(out.topic, payload):
            self.counters["spooled"] += 1
        else:
            self.counters["spool_refused"] += 1
            allowed, suppressed = self._log_throttle.allow("spool-full")
            if allowed:
                log.error("gateway %s: spool full (%d MB, policy refuse_newest); reading refused (%d so far%s)",
                          self.gateway.id, self.settings.spool_max_mb, self.counters["spool_refused"],
                          f", {suppressed} not logged" if suppressed else "")

    def _acked(self, mid: int) -> None:
        entry = self._inflight.pop(mid, None)
        if entry is None:
            return
        kind, out, bundle = entry
        self.counters["published"] += 1
        if kind == LIVE:
            assert out is not None
            if out.reading:
                self.counters["readings_published"] += 1
                self.live_latency.append(time.monotonic() - out.enqueued)
        else:
            assert bundle is not None
            self.counters["replayed"] += bundle[1]
            self._mark_replay_acked(bundle[0])
        self._wake.set()

    def _mark_replay_acked(self, pos: Position) -> None:
        """Commit the spool up to the longest acknowledged prefix of what was replayed."""
        self._replay_acked.add(pos)
        done, last = 0, None
        while self._replay_order and self._replay_order[0][0] in self._replay_acked:
            last, n = self._replay_order.popleft()
            self._replay_acked.discard(last)
            done += n
        if last is not None:
            self._replaying -= done
            self.spool.commit(last, done)

    def _uplink_down(self) -> None:
        """The session ended: what was in flight was maybe not delivered. Live messages go back
        to the front of the live queue; the spool's read head goes back to its cursor."""
        live = [o for k, o, _ in self._inflight.values() if k == LIVE and o is not None]
        self.counters["resent_after_drop"] += len(self._inflight)
        self._inflight.clear()
        self._replay_order.clear()
        self._replay_acked.clear()
        self._replaying = 0
        self.spool.rewind()
        for out in reversed(live):
            self._live.appendleft(out)
        while self._live and not self._live[0].retain:  # no link: everything live goes to disk
            self._spill(self._live.popleft())
        self._live = deque(o for o in self._live if not o.retain)

    async def _sender(self, stop: asyncio.Event) -> None:
        window, reserve = self.settings.inflight_window, max(1, self.settings.inflight_window // 5)
        rate, bundle = self.settings.replay_max_rate, self.settings.replay_bundle
        burst = float(max(bundle, rate // 20))  # the bucket holds 50 ms of replay, and at least one bundle
        tokens, refilled = (min(float(rate), burst) if rate else 0.0), time.monotonic()
        last_flush = time.monotonic()
        while True:
            if stop.is_set() and not self._live:
                return
            self._wake.clear()
            wait = 0.5
            if self.uplink.connected:
                try:
                    while self._live and len(self._inflight) < window:
                        out = self._live[0]
                        mid = self.uplink.publish_nowait(out.topic, out.payload, qos=1, retain=out.retain)
                        self._live.popleft()
                        self._inflight[mid] = (LIVE, out, None)
                    # Replay uses what live traffic leaves of the window, less a reserve for live,
                    # and no more than replay_max_rate records a second (a token bucket). Records
                    # go in backlog bundles of up to replay_bundle.
                    room = min((window - reserve - len(self._inflight)) * bundle,
                               self.settings.replay_inflight - self._replaying)
                    if rate:
                        now = time.monotonic()
                        tokens = min(burst, tokens + (now - refilled) * rate)
                        refilled = now
                        room = min(room, int(tokens))
                    if room > 0 and not self._live and not stop.is_set():
                        records = self.spool.read(room)
                        for chunk in _bundles(records, bundle):
                            payload = pack_backlog((r.topic, r.payload) for r in chunk)
                            mid = self.uplink.publish_nowait(self._backlog_topic, payload, qos=1)
                            self._inflight[mid] = (REPLAY, None, (chunk[-1].after, len(chunk)))
                            self._replay_order.append((chunk[-1].after, len(chunk)))
                            self._replaying += len(chunk)
                        tokens -= len(records)
                    if rate and self.spool.depth > self._replaying and tokens < 1:
                        wait = min(wait, (1 - tokens) / rate)
                except NotConnected:
                    pass
            if time.monotonic() - last_flush >= 1.0:
                self.spool.flush()
                last_flush = time.monotonic()
            try:
                await asyncio.wait_for(self._wake.wait(), wait)
            except TimeoutError:
                pass

    # -- readings from pollers and local MQTT devices ------------------------------------

    def _publish_reading(self, device: str, ts: float, values: dict[str, float],
                         quality: dict[str, str] | None = None) -> None:
        device_class = self._classes.get(device)
        if device_class is not None:
            quality = mark_out_of_range(spec_for(device_class), values, quality or {})
            if quality:
                self.counters["marked_bad"] += sum(QUALITY_LEVELS[q] == "bad" for q in quality.values())
        msg = Telemetry(seq=self._next_seq(), boot=self.boot, ts=ts, device=device, metrics=values,
                        quality=quality or {})
        self.enqueue(topics.device_telemetry(self.community.id, self.gateway.id, device), msg)

    def _publish_device_event(self, device: str, event: str, severity: str, data: dict[str, Any]) -> None:
        msg = Event(seq=self._next_seq(), boot=self.boot, ts=time.time(), device=device, event=event,
                    severity=severity, data=data)
        self.enqueue(topics.device_event(self.community.id, self.gateway.id, device), msg)

    async def _on_local_connect(self, client: aiomqtt.Client) -> None:
        await client.subscribe(self._local_filter, qos=1)

    async def _on_local_message(self, message: aiomqtt.Message) -> None:
        topic = str(message.topic)
        raw = message.payload if isinstance(message.payload, bytes) else str(message.payload).encode()
        device = self.devices.get(topic.rsplit("/", 1)[-1])
        if device is None:
            self._reject(topic, "unknown-device", "not provisioned on this gateway", raw)
            return
        try:
            ts, values, event, quality = parse_raw(raw, spec_for(device.device_class))
        except RawRejected as exc:
            self._reject(topic, exc.reason, exc.detail, raw)
            return
        if ts is not None and self._seen_recently(device.id, raw):
            self.counters["local_redelivered"] += 1
            log.debug("gateway %s: dropped a redelivered copy from %s (ts %s)", self.gateway.id, device.id, ts)
            return
        ts = ts if ts is not None else time.time()
        try:
            if values is not None:
                self._publish_reading(device.id, ts, values, quality)
            else:
                assert event is not None
                msg = Event(seq=self._next_seq(), boot=self.boot, ts=ts, device=device.id, **event)
                self.enqueue(topics.device_event(self.community.id, self.gateway.id, device.id), msg)
        except ValidationError as exc:
            self._reject(topic, "schema", str(exc.errors()[0]["msg"]), raw)

    def _seen_recently(self, device_id: str, raw: bytes, window: int = 16) -> bool:
        """True if ``raw`` is among the device's last ``window`` timestamped payloads; else remember it."""
        recent = self._recent_local.get(device_id)
        if recent is None:
            recent = self._recent_local[device_id] = deque(maxlen=window)
        if raw in recent:
            return True
        recent.append(raw)
        return False

    def _reject(self, source: str, reason: str, detail: str, raw: bytes) -> None:
        self.counters["rejected"] += 1
        self.dead_letters.add(source, reason, detail, raw)

    # -- gateway health ------------------------------------------------------------------

    async def _health(self, stop: asyncio.Event) -> None:
        psutil.cpu_percent(None)
        while not await wait_or_stop(stop, self.settings.health_interval_s):
            self.enqueue(topics.gateway_health(self.community.id, self.gateway.id), self.health())

    def health(self) -> GatewayHealth:
        disk = shutil.disk_usage(self.settings.state_dir)
        online = offline = 0
        errors: dict[str, int] = {}
        for p in self.pollers:
            on, off = p.online_counts()
            online, offline = online + on, offline + off
            errors.update(p.error_counts())
        return GatewayHealth(ts=time.time(), boot=self.boot, cpu_pct=psutil.cpu_percent(None),
                             memory_pct=psutil.virtual_memory().percent,
                             disk_pct=round(100 * disk.used / disk.total, 1),
                             agent_rss_mb=round(self._process.memory_info().rss / 2**20, 1),
                             spool_depth=self.spool.depth, spool_oldest_s=self.spool.oldest_age_s(),
                             devices_online=online, devices_offline=offline, device_errors=errors)

    # -- commands ------------------------------------------------------------------------

    async def _on_command(self, message: aiomqtt.Message) -> None:
        raw = message.payload if isinstance(message.payload, bytes) else str(message.payload).encode()
        self.counters["commands"] += 1
        try:
            cmd = decode_as(Command, raw)
        except DecodeError as exc:
            self._reject(str(message.topic), f"command-{exc.reason}", exc.detail, raw)
            cmd_id = _loose_id(raw)
            if cmd_id is not None:  # tell the hub why, when it can be told
                self.enqueue(topics.gateway_ack(self.community.id, self.gateway.id),
                             Ack(id=cmd_id, ts=time.time(), result="refused",
                                 reason=f"unknown command or bad arguments: {exc.detail}"[:256]))
            return
        asyncio.get_running_loop().create_task(self._run_command(cmd), name=f"command-{cmd.id}")

    async def _run_command(self, cmd: Command) -> None:
        result, reason = "ok", ""
        try:
            await self._execute(cmd)
        except CommandRefused as exc:
            result, reason = "refused", str(exc)[:256]
        except Exception as exc:  # never let a command kill the agent
            log.exception("gateway %s: command %s failed", self.gateway.id, cmd.id)
            result, reason = "error", str(exc)[:256]
        self.enqueue(topics.gateway_ack(self.community.id, self.gateway.id),
                     Ack(id=cmd.id, ts=time.time(), result=result, reason=reason))

    async def _execute(self, cmd: Command) -> None:
        if cmd.device is not None and cmd.device not in self._classes:
            raise CommandRefused(f"unknown device {cmd.device!r} on gateway {self.gateway.id}")
        if cmd.command == "ping":
            return
        if cmd.command == "rebirth":
            for p in self.pollers:
                for state in p.devices.values():
                    state.report.forget()
            self.enqueue(self._state_topic, self._birth(), retain=True)
            return
        if cmd.device is None:
            raise CommandRefused(f"{cmd.command} needs a device")
        bus = self._bus_of.get(cmd.device)
        if bus is None:
            raise CommandRefused(f"not allowed: {cmd.device} is an MQTT device; it reports by itself")
        if cmd.command == "read_now":
            bus.read_now(cmd.device)
        elif cmd.command == "set_interval":
            if cmd.value is None:
                raise CommandRefused("set_interval needs value (seconds)")
            bus.set_interval(cmd.device, cmd.value)
        elif cmd.command in ("enable_point", "disable_point"):
            if cmd.point is None:
                raise CommandRefused(f"{cmd.command} needs point")
            bus.set_point_enabled(cmd.device, cmd.point, cmd.command == "enable_point")
        elif cmd.command == "write":
            if cmd.point is None or cmd.value is None:
                raise CommandRefused("write needs point and value")
            await bus.write(cmd.device, cmd.point, cmd.value, timeout_s=self.settings.command_timeout_s)


def _loose_id(raw: bytes) -> str | None:
    try:
        doc = json.loads(raw)
    except ValueError:
        return None
    cmd_id = doc.get("id") if isinstance(doc, dict) else None
    return cmd_id if isinstance(cmd_id, str) and 0 < len(cmd_id) <= 64 else None
