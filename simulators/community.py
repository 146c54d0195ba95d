"""Simulate a whole community's devices: MQTT sensors, serial sensors on pseudo-terminals, a kiosk.

MQTT devices publish raw readings on ``{prefix}/{gateway}/{device}`` (the local device
side of each gateway); serial devices answer on pseudo-terminals whose paths are in
:attr:`CommunitySimulator.serial_ports`.
"""

import asyncio
import json
import logging
import random
import time
import zlib
from typing import Any

import aiomqtt

from contract import topics
from contract.classes import CATALOG, DeviceClass
from contract.codec import DecodeError, decode
from contract.messages import Birth
from contract.topics import TopicKind
from contract.endpoints import MqttEndpoint
from contract.topology import Community, DeviceSpec
from servicekit.lifecycle import wait_or_stop
from servicekit.mqtt import MqttLink, NotConnected
from simulators.pty_pms5003 import PtyPms5003
from simulators.settings import SimulateSettings
from simulators.signals import Device, Fault

log = logging.getLogger(__name__)

REQUEST_CATEGORIES = ("repair", "cleaning", "security", "greening", "parking", "noise")


def in_range(device_class: DeviceClass, values: dict[str, float]) -> dict[str, float]:
    """What the sensor reports: within its range (one drifting past 100 %RH reads 100), the
    catalogue's range, which the hub enforces."""
    spec = CATALOG[device_class]
    out = {}
    for name, value in values.items():
        metric = spec.metric(name)
        out[name] = min(max(value, metric.low), metric.high) if metric is not None else value
    return out


class CommunitySimulator:
    def __init__(self, community: Community, mqtt: MqttEndpoint, settings: SimulateSettings) -> None:
        self.community = community
        self.settings = settings
        self._born: set[str] = set()
        self._all_born = asyncio.Event()
        self.link = MqttLink(mqtt, client_id=f"sim-{community.id}", on_connect=self._watch_gateways,
                             on_message=self._gateway_state)
        self.published: dict[str, int] = {}
        self.events_published = 0
        self.republished = 0
        self.serial: dict[str, PtyPms5003] = {}
        self._start = time.monotonic()
        for d in community.devices:
            if d.serial is not None:
                self.serial[d.id] = PtyPms5003(self._seed(d), faults=self._faults(d))

    @property
    def serial_ports(self) -> dict[str, str]:
        return {device_id: sim.port for device_id, sim in self.serial.items()}

    def _seed(self, device: DeviceSpec) -> int:
        return self.settings.seed ^ zlib.crc32(device.id.encode())

    def _faults(self, device: DeviceSpec) -> tuple[Fault, ...]:
        return tuple(Fault(f.kind, f.start_s, f.duration_s, f.magnitude)
                     for f in self.settings.faults if f.device == device.id)

    async def _watch_gateways(self, client: aiomqtt.Client) -> None:
        for g in self.community.gateways:
            await client.subscribe(topics.gateway_state(self.community.id, g.id), qos=1)

    async def _gateway_state(self, message: aiomqtt.Message) -> None:
        raw = message.payload if isinstance(message.payload, bytes) else b""
        try:
            state = decode(TopicKind.STATE, raw)
        except DecodeError:
            return
        if isinstance(state, Birth):
            self._born.add(str(message.topic).split("/")[3])
            if self._born >= {g.id for g in self.community.gateways}:
                self._all_born.set()

    async def _wait_for_gateways(self, stop: asyncio.Event) -> None:
        if self.settings.wait_for_gateways_s <= 0:
            return
        born, stopped = asyncio.create_task(self._all_born.wait()), asyncio.create_task(stop.wait())
        try:
            await asyncio.wait((born, stopped), timeout=self.settings.wait_for_gateways_s,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            born.cancel()
            stopped.cancel()
        if not self._all_born.is_set() and not stop.is_set():
            missing = {g.id for g in self.community.gateways} - self._born
            log.warning("gateways not born after %.0fs: %s; devices start anyway",
                        self.settings.wait_for_gateways_s, ", ".join(sorted(missing)))

    async def run(self, stop: asyncio.Event) -> None:
        for sim in self.serial.values():
            sim.start()
        link_stop = asyncio.Event()
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.link.run(link_stop), name="sim-mqtt")
                await self._wait_for_gateways(stop)
                for d in self.community.devices:
                    if d.serial is None:
                        tg.create_task(self._device(d, stop), name=f"sim-{d.id}")
                await stop.wait()
                link_stop.set()
        finally:
            for sim in self.serial.values():
                sim.stop()

    async def _device(self, spec: DeviceSpec, stop: asyncio.Event) -> None:
        device = Device(spec.device_class, self._seed(spec), self._faults(spec))
        rng = random.Random(self._seed(spec) + 1)
        topic = f"{self.settings.device_topic_prefix}/{spec.gateway}/{spec.id}"
        scale = self.settings.time_scale
        # Stagger the first readings so that devices do not all publish in the same instant.
        if await wait_or_stop(stop, rng.uniform(0, spec.interval_s) / scale):
            return
        while not stop.is_set():
            t = (time.monotonic() - self._start) * scale
            if not device.silent(t):
                await self._publish(topic, {"ts": time.time(), "values": in_range(spec.device_class, device.sample(t))},
                                    spec.id, stop)
            if spec.device_class is DeviceClass.KIOSK and rng.random() < 0.2:
                event = {"ts": time.time(), "event": "service_request", "severity": "info",
                         "data": {"category": rng.choice(REQUEST_CATEGORIES)}}
                if await self._publish(topic, event, None, stop):
                    self.events_published += 1
            if await wait_or_stop(stop, spec.interval_s / scale):
                return

    async def _publish(self, topic: str, doc: dict[str, Any], count_for: str | None, stop: asyncio.Event) -> bool:
        payload = json.dumps(doc).encode()
        while not stop.is_set():
            try:
                await self.link.publish(topic, payload, qos=1, timeout=2)
            except (NotConnected, TimeoutError):
                # Sent again, as a device does (QoS 1 is at least once): the first may still
                # have arrived, so one reading can be counted downstream twice.
                if count_for is not None:
                    self.republished += 1
                continue
            if count_for is not None:
                self.published[count_for] = self.published.get(count_for, 0) + 1
            return True
        return False

    def stats(self) -> dict[str, Any]:
        serial_frames = {d: s.frames_sent for d, s in self.serial.items()}
        return {
            "readings_published": sum(self.published.values()) + sum(serial_frames.values()),
            "mqtt_readings": sum(self.published.values()),
            "serial_frames": sum(serial_frames.values()),
            "events_published": self.events_published,
            "republished": self.republished,  # readings sent again after no PUBACK: each may be there twice
            "per_device": {**self.published, **serial_frames},
        }
