"""The edge agent of one gateway: read local devices, publish the contract upstream.

Tasks: ``uplink`` (MQTT to the hub's broker, with birth on connect and death as Last
Will), ``devices`` (MQTT subscription to the gateway's local devices), one
``serial-<device>`` poller per serial device, and ``sender`` draining the bounded
uplink queue with QoS 1.
"""

import asyncio
import importlib.metadata
import logging
import secrets
import time
from collections import deque
from typing import Any

import aiomqtt
from pydantic import BaseModel, ValidationError

from contract import topics
from contract.codec import DecodeError, decode_as, encode
from contract.endpoints import MqttEndpoint
from contract.messages import Ack, Birth, Command, Death, DeviceInfo, Event, Telemetry
from contract.topology import Community, DeviceSpec
from edge.deadletter import DeadLetterFile
from edge.normalize import RawRejected, parse_raw, spec_for
from edge.settings import EdgeSettings
from firmware_adapters.pms5003_driver import NoAnswer, Pms5003Driver
from firmware_adapters.serial_transport import SerialTransport, TransportError
from servicekit.lifecycle import wait_or_stop
from servicekit.mqtt import MqttLink, NotConnected
from servicekit.throttle import LogThrottle

log = logging.getLogger(__name__)


def _software_version() -> str:
    try:
        return f"midbrain-edge/{importlib.metadata.version('midbrain')}"
    except importlib.metadata.PackageNotFoundError:
        return "midbrain-edge/dev"


class EdgeAgent:
    def __init__(self, community: Community, gateway_id: str, mqtt: MqttEndpoint, settings: EdgeSettings,
                 *, serial_ports: dict[str, str] | None = None) -> None:
        self.community = community
        self.gateway = community.gateway(gateway_id)
        self.devices = {d.id: d for d in community.devices_of(gateway_id)}
        self.settings = settings
        self.serial_ports = serial_ports or {}
        self.boot = f"{int(time.time() * 1000):x}-{secrets.token_hex(3)}"
        self._seq = 0
        self._queue: deque[tuple[str, BaseModel, bool]] = deque()  # topic, message, retain
        self._poll_now = {d.id: asyncio.Event() for d in self.devices.values() if d.serial is not None}
        self._queued = asyncio.Event()
        self._log_throttle = LogThrottle()
        self.counters: dict[str, int] = {"published": 0, "readings_published": 0, "dropped_queue_full": 0, "rejected": 0,
                                         "serial_errors": 0, "commands": 0}
        self.dead_letters = DeadLetterFile(settings.state_dir / f"{gateway_id}-dead-letters.jsonl")
        c, g = community.id, gateway_id
        self._state_topic = topics.gateway_state(c, g)
        will = aiomqtt.Will(self._state_topic, encode(Death(boot=self.boot)), qos=1, retain=True)
        self.uplink = MqttLink(mqtt, client_id=f"edge-{c}-{g}", will=will, on_connect=self._on_uplink_connect,
                               on_message=self._on_command)
        local = settings.device_broker or mqtt
        self._local_filter = f"{settings.device_topic_prefix}/{g}/+"
        # Persistent session: readings that devices publish while the agent restarts wait in the broker.
        self.local = MqttLink(local, client_id=f"edge-{c}-{g}-local", clean_session=False,
                              on_connect=self._on_local_connect,
                              on_message=self._on_local_message)

    # -- lifecycle ---------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop``; then stop reading devices, drain the queue, publish a clean death."""
        sources_stop, uplink_stop = asyncio.Event(), asyncio.Event()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.uplink.run(uplink_stop), name="uplink")
            tg.create_task(self.local.run(sources_stop), name="devices")
            for device in self.devices.values():
                if device.serial is not None:
                    tg.create_task(self._poll_serial(device, sources_stop), name=f"serial-{device.id}")
            sender = tg.create_task(self._sender(uplink_stop), name="sender")
            await stop.wait()
            sources_stop.set()
            await self._drain(self.settings.flush_timeout_s)
            try:
                await self.uplink.publish(self._state_topic, encode(Death(boot=self.boot, clean=True)),
                                          retain=True, timeout=2)
            except (NotConnected, TimeoutError) as exc:
                log.warning("gateway %s: clean death not published (%s); the Last Will stands in", self.gateway.id, exc)
            uplink_stop.set()
            self._queued.set()
            await sender
        left = len(self._queue)
        if left:
            self.counters["unsent_at_exit"] = left
            log.error("gateway %s: %d readings not sent at exit", self.gateway.id, left)

    async def _drain(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self._queue and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    def stats(self) -> dict[str, Any]:
        return {**self.counters, "queued": len(self._queue), "dead_letters": self.dead_letters.count,
                "boot": self.boot}

    # -- uplink ------------------------------------------------------------------------

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    async def _on_uplink_connect(self, client: aiomqtt.Client) -> None:
        await client.subscribe(topics.filter_gateway_commands(self.community.id, self.gateway.id), qos=1)
        # Born means "reading my devices": wait (bounded) for the local device subscription.
        try:
            await self.local.wait_connected(self.settings.birth_wait_s)
        except TimeoutError:
            log.warning("gateway %s: local device broker not reachable; announcing birth anyway", self.gateway.id)
        await client.publish(self._state_topic, encode(self._birth()), qos=1, retain=True)

    def _birth(self) -> Birth:
        return Birth(ts=time.time(), boot=self.boot, seq=self._next_seq(), software=_software_version(),
                     devices=tuple(DeviceInfo.model_validate({"id": d.id, "class": d.device_class})
                                   for d in self.devices.values()))

    def enqueue(self, topic: str, message: BaseModel, *, retain: bool = False) -> None:
        """Queue a message for the hub; when full, drop the oldest and count it."""
        if len(self._queue) >= self.settings.queue_size:
            self._queue.popleft()
            self.counters["dropped_queue_full"] += 1
            allowed, suppressed = self._log_throttle.allow("queue-full")
            if allowed:
                log.warning("gateway %s: uplink queue full (%d); dropped the oldest reading (%d dropped so far%s)",
                            self.gateway.id, self.settings.queue_size, self.counters["dropped_queue_full"],
                            f", {suppressed} not logged" if suppressed else "")
        self._queue.append((topic, message, retain))
        self._queued.set()

    async def _sender(self, stop: asyncio.Event) -> None:
        while True:
            if not self._queue:
                if stop.is_set():
                    return
                self._queued.clear()
                await self._queued.wait()
                continue
            topic, message, retain = self._queue[0]
            try:
                await self.uplink.publish(topic, encode(message), qos=1, retain=retain, timeout=1.0)
            except (NotConnected, TimeoutError):
                if stop.is_set():
                    return
                continue  # keep it at the head of the queue; the link reconnects
            self._queue.popleft()
            self.counters["published"] += 1
            if isinstance(message, Telemetry):
                self.counters["readings_published"] += 1

    # -- local MQTT devices ------------------------------------------------------------

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
            ts, values, event = parse_raw(raw, spec_for(device.device_class))
        except RawRejected as exc:
            self._reject(topic, exc.reason, exc.detail, raw)
            return
        ts = ts if ts is not None else time.time()
        try:
            if values is not None:
                self._publish_reading(device, ts, values)
            else:
                assert event is not None
                msg = Event(seq=self._next_seq(), boot=self.boot, ts=ts, device=device.id, **event)
                self.enqueue(topics.device_event(self.community.id, self.gateway.id, device.id), msg)
        except ValidationError as exc:
            self._reject(topic, "schema", str(exc.errors()[0]["msg"]), raw)

    def _publish_reading(self, device: DeviceSpec, ts: float, values: dict[str, float]) -> None:
        msg = Telemetry(seq=self._next_seq(), boot=self.boot, ts=ts, device=device.id, metrics=values)
        self.enqueue(topics.device_telemetry(self.community.id, self.gateway.id, device.id), msg)

    def _reject(self, source: str, reason: str, detail: str, raw: bytes) -> None:
        self.counters["rejected"] += 1
        self.dead_letters.add(source, reason, detail, raw)

    # -- serial devices ------------------------------------------------------------------

    async def _poll_serial(self, device: DeviceSpec, stop: asyncio.Event) -> None:
        assert device.serial is not None
        link = device.serial
        port = self.serial_ports.get(device.id) or link.port
        transport: SerialTransport | None = None
        try:
            while not stop.is_set():
                started = time.monotonic()
                try:
                    if transport is None:
                        transport = await asyncio.to_thread(SerialTransport, port, link.baudrate, link.timeout_s)
                        driver = Pms5003Driver(transport, timeout_s=link.timeout_s)
                    reading = await asyncio.to_thread(driver.read)
                    self._publish_reading(device, time.time(), {"pm1_0": float(reading.pm1_0),
                                                               "pm2_5": float(reading.pm2_5),
                                                               "pm10": float(reading.pm10)})
                except NoAnswer as exc:
                    self.counters["serial_errors"] += 1
                    log.warning("device %s on %s: %s", device.id, port, exc)
                except Exception as exc:  # TransportError, or a driver bug: never fatal to the agent
                    self.counters["serial_errors"] += 1
                    if not isinstance(exc, TransportError):
                        log.exception("device %s: unexpected error while polling %s", device.id, port)
                    log.warning("device %s: %s; retrying in %.1fs", device.id, exc, self.settings.serial_retry_s)
                    if transport is not None:
                        transport.close()
                        transport = None
                    if await wait_or_stop(stop, self.settings.serial_retry_s):
                        return
                    continue
                if await self._until_next_poll(device.id, stop, device.interval_s - (time.monotonic() - started)):
                    return
        finally:
            if transport is not None:
                transport.close()

    async def _until_next_poll(self, device_id: str, stop: asyncio.Event, delay: float) -> bool:
        """Wait for the next poll (interval elapsed or a read_now command); True if stopping."""
        poll_now = self._poll_now[device_id]
        waits = [asyncio.create_task(stop.wait()), asyncio.create_task(poll_now.wait())]
        try:
            await asyncio.wait(waits, timeout=max(0.0, delay), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
        poll_now.clear()
        return stop.is_set()

    # -- commands ------------------------------------------------------------------------

    async def _on_command(self, message: aiomqtt.Message) -> None:
        raw = message.payload if isinstance(message.payload, bytes) else str(message.payload).encode()
        self.counters["commands"] += 1
        try:
            cmd = decode_as(Command, raw)
        except DecodeError as exc:
            self._reject(str(message.topic), f"command-{exc.reason}", exc.detail, raw)
            return
        result, reason = "ok", ""
        if cmd.device is not None and cmd.device not in self.devices:
            result, reason = "refused", f"unknown device {cmd.device!r} on gateway {self.gateway.id}"
        elif cmd.command == "rebirth":
            self.enqueue(self._state_topic, self._birth(), retain=True)
        elif cmd.command == "read_now":
            device = self.devices.get(cmd.device or "")
            if device is None or device.serial is None:
                result, reason = "refused", "read_now needs a polled (serial) device; MQTT devices report by themselves"
            else:
                self._poll_now[device.id].set()
        ack = Ack(id=cmd.id, ts=time.time(), result=result, reason=reason)
        self.enqueue(topics.gateway_ack(self.community.id, self.gateway.id), ack)
