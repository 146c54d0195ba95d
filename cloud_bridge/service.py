"""``midbrain bridge``: hub summaries in (persistent MQTT session), city batches out.

Tasks: ``bridge-mqtt`` (subscribe to the hub's summaries), ``bridge-seal`` (pending ->
batches), ``bridge-deliver`` (batches -> city). On SIGTERM the bridge seals and tries to
deliver what it holds for up to ``drain_s`` seconds; whatever remains stays in the
outbox for the next start.
"""

import asyncio
import logging
import sqlite3
import time
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
from pydantic import ValidationError

from cloud_bridge.api import create_app
from cloud_bridge.city_mqtt import MqttTransport
from cloud_bridge.delivery import Deliverer, http_client
from cloud_bridge.downlink import DownlinkState, Downlinker
from cloud_bridge.ngsi_ld import NgsiLdTransport
from cloud_bridge.outbox import PRIORITY_ALERT, PRIORITY_ROUTINE, Outbox, OutboxFull
from cloud_bridge.privacy import to_city
from cloud_bridge.settings import BridgeSettings
from contract import topics
from contract.codec import DecodeError, decode_as
from contract.endpoints import MqttEndpoint
from contract.downlink import DownlinkAck
from contract.messages import HubSummary
from servicekit.http import HttpServer
from servicekit.lifecycle import cancel_until_done, wait_or_stop, write_json_atomically
from servicekit.mqtt import MqttLink, NotConnected

log = logging.getLogger(__name__)


class Bridge:
    """Hub summaries in, city batches out. The caller closes ``outbox`` after :meth:`run`."""

    def __init__(self, community_id: str, mqtt: MqttEndpoint, settings: BridgeSettings,
                 household_devices: frozenset[str] = frozenset()) -> None:
        self.community_id = community_id
        self.settings = settings
        self.household_devices = household_devices  # never referred to upward, not even hashed
        self.device_salt = settings.device_salt.get_secret_value().encode()
        if not self.device_salt:
            log.info("bridge.device_salt is not set: no device references are sent to the city")
        self.key = settings.community_key.get_secret_value().encode()
        if not self.key:
            raise ValueError("bridge.community_key is not set: the city refuses unsigned batches "
                             "(set MIDBRAIN_BRIDGE__COMMUNITY_KEY, the key the city holds for this community)")
        self.outbox = Outbox(settings.outbox, remember_keys_s=settings.remember_keys_s,
                             max_summaries=settings.max_summaries, full_policy=settings.full_policy, ttl_s=settings.ttl_s,
                             signing_key=self.key, gzip_min_bytes=settings.gzip_min_bytes)
        self.invalid = 0
        self.redelivered = 0
        self.store_failures = 0
        self.full_refusals = 0
        # Manual acknowledgement: a summary's PUBACK goes out only once the outbox has committed
        # it, so a bridge killed in between gets it again from the broker (the outbox's
        # idempotency key drops the repeat).
        self.link = MqttLink(mqtt, client_id=f"{settings.client_id}-{community_id}", clean_session=False,
                             manual_ack=True, on_connect=self._subscribe, on_message=self._on_summary)
        self._deliverer: Deliverer | None = None
        self._ack_topic = topics.hub_downlink_ack(community_id)
        self.downlink_state = DownlinkState(settings.outbox)
        self._downlinker: Downlinker | None = None
        self._downlink_wake = asyncio.Event()

    async def _subscribe(self, client: aiomqtt.Client) -> None:
        await client.subscribe(topics.filter_hub_summaries(self.community_id), qos=1)
        await client.subscribe(topics.hub_downlink_ack(self.community_id), qos=1)

    async def _on_summary(self, message: aiomqtt.Message) -> None:
        session = self.link.session
        if str(message.topic) == self._ack_topic:
            await self._on_hub_answer(message)
            self.link.ack(session, message.mid, message.qos)
            return
        try:
            await self._keep(message)
        except OutboxFull as exc:
            # Not acknowledged: the broker keeps it, and delivers it again after the reconnect
            # backoff, by when deliveries may have made room.
            self.full_refusals += 1
            if self.full_refusals == 1 or self.full_refusals % 100 == 0:
                log.error("%s: summary left with the broker (%d refusals so far)", exc, self.full_refusals)
            raise aiomqtt.MqttError(str(exc)) from exc
        except (OSError, sqlite3.Error) as exc:
            # Not acknowledged: leave the session, and the broker delivers it again once the
            # link is back (after the reconnect backoff), by which time the disk may be too.
            self.store_failures += 1
            log.error("outbox could not keep a summary (%s); it stays with the broker", exc)
            raise aiomqtt.MqttError(f"outbox failure: {exc}") from exc
        self.link.ack(session, message.mid, message.qos)  # after the outbox commit (or the refusal)

    async def _on_hub_answer(self, message: aiomqtt.Message) -> None:
        """The hub's answer to a city item: kept (durably) until the city has it."""
        raw = message.payload if isinstance(message.payload, bytes) else str(message.payload).encode()
        try:
            ack = DownlinkAck.model_validate_json(raw)
        except ValidationError as exc:
            self.invalid += 1
            log.error("invalid answer from the hub on %s: %s", message.topic, exc.errors()[0]["msg"])
            return
        if await asyncio.to_thread(self.downlink_state.answer, ack) and self._downlinker is not None:
            self._downlink_wake.set()

    async def _hand_to_hub(self, payload: bytes) -> None:
        await self.link.publish(topics.city_downlink(self.community_id), payload, qos=1, timeout=10)

    async def _downlink(self, stop: asyncio.Event, downlinker: Downlinker) -> None:
        """Items from the city to the hub, and the hub's answers up: at once when an item has
        come or the hub has answered, and every downlink_poll_s (retries). The asking is
        done by :meth:`_ask_city`, on a request the city may hold open."""
        asking = asyncio.create_task(self._ask_city(stop, downlinker), name="bridge-downlink-ask")
        try:
            while not stop.is_set():
                try:
                    await downlinker.hand_over()
                    await downlinker.send_answers()
                except (httpx.HTTPError, OSError, NotConnected, TimeoutError, aiomqtt.MqttError) as exc:
                    downlinker.counts["fetch_failures"] += 1
                    log.warning("downlink: %s: %s; trying again", type(exc).__name__, exc)
                self._downlink_wake.clear()
                waiter = asyncio.create_task(self._downlink_wake.wait())
                stopper = asyncio.create_task(stop.wait())
                await asyncio.wait([waiter, stopper, asking], timeout=self.settings.downlink_poll_s,
                                   return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                stopper.cancel()
                if asking.done() and not stop.is_set():
                    asking.result()  # what stopped the asking (a failing disk, say) is the bridge's failure too
        finally:
            await cancel_until_done([asking])

    async def _ask_city(self, stop: asyncio.Event, downlinker: Downlinker) -> None:
        wait = self.settings.downlink_wait_s
        while not stop.is_set():
            started = time.monotonic()
            try:
                if await downlinker.fetch(wait):
                    self._downlink_wake.set()
                    continue
            except (httpx.HTTPError, OSError, TimeoutError) as exc:
                downlinker.counts["fetch_failures"] += 1
                log.warning("downlink: %s: %s; asking again in %.0f s", type(exc).__name__, exc,
                            self.settings.downlink_poll_s)
            else:
                if time.monotonic() - started >= wait / 2 > 0:  # held open: ask again at once
                    continue
            # A failure, plain polling, or a city that answers at once when it has nothing.
            await wait_or_stop(stop, self.settings.downlink_poll_s)

    async def _keep(self, message: aiomqtt.Message) -> None:
        raw = message.payload if isinstance(message.payload, bytes) else str(message.payload).encode()
        try:
            summary = decode_as(HubSummary, raw)
        except DecodeError as exc:
            self.invalid += 1
            log.error("invalid hub summary on %s: %s", message.topic, exc)
            return
        if summary.community != self.community_id:
            self.invalid += 1
            log.error("summary for community %s arrived at the bridge of %s", summary.community, self.community_id)
            return
        priority = PRIORITY_ALERT if summary.alerts else PRIORITY_ROUTINE  # alert windows go first
        if not await asyncio.to_thread(self.outbox.add, to_city(summary, k=self.settings.small_cell_k,
                                                             device_salt=self.device_salt,
                                                             household_devices=self.household_devices), priority):
            self.redelivered += 1

    async def _sealer(self, stop: asyncio.Event, deliverer: Deliverer) -> None:
        while True:
            if await asyncio.to_thread(self.outbox.seal, self.community_id, self.settings.batch_max,
                                       self.settings.batch_linger_s):
                deliverer.wake.set()
                continue
            if await wait_or_stop(stop, self.settings.batch_interval_s):
                return

    async def run(self, stop: asyncio.Event, *, drain_s: float = 10.0) -> None:
        server = None
        if self.settings.http_port is not None:
            server = HttpServer(create_app(self), self.settings.http_host, self.settings.http_port)
            log.info("bridge health and metrics on %s", server.url)
        async with http_client(self.settings) as client:
            city_mqtt = None
            if self.settings.transport == "mqtt":
                assert self.settings.city_mqtt is not None
                city_mqtt = MqttTransport(self.settings.city_mqtt, self.community_id,
                                          f"{self.settings.client_id}-{self.community_id}-city", self.outbox,
                                          self.settings.http_timeout_s)
                deliverer = Deliverer(self.outbox, self.settings, city_mqtt, self.community_id, city_mqtt.destination)
            elif self.settings.transport == "ngsi-ld":
                assert self.settings.ngsi_ld_location is not None
                ngsi = NgsiLdTransport(client, self.settings.ngsi_ld_url or self.settings.city_url,
                                       self.settings.ngsi_ld_location, self.settings.ngsi_ld_tenant)
                deliverer = Deliverer(self.outbox, self.settings, ngsi, self.community_id, ngsi.destination)
            else:
                deliverer = Deliverer.http(self.outbox, self.settings, client, self.community_id)
            self._deliverer = deliverer
            city_stop = asyncio.Event()  # the city link outlives the drain below
            city_link = asyncio.create_task(city_mqtt.link.run(city_stop), name="bridge-city-mqtt") \
                if city_mqtt is not None else None
            try:
                await self._serve(stop, server, deliverer, client, drain_s)
            finally:
                city_stop.set()
                if city_link is not None:
                    await city_link

    async def _serve(self, stop: asyncio.Event, server: HttpServer | None, deliverer: Deliverer,
                     client: httpx.AsyncClient, drain_s: float) -> None:
        link_stop, work_stop = asyncio.Event(), asyncio.Event()
        downlinker = self._downlinker = Downlinker(self.downlink_state, self.settings, client, self.community_id,
                                                   self._hand_to_hub)
        async with asyncio.TaskGroup() as tg:
            if server is not None:
                tg.create_task(server.serve(), name="bridge-http")
            tg.create_task(self.link.run(link_stop), name="bridge-mqtt")
            tg.create_task(self._sealer(work_stop, deliverer), name="bridge-seal")
            tg.create_task(deliverer.run(work_stop), name="bridge-deliver")
            tg.create_task(self._downlink(work_stop, downlinker), name="bridge-downlink")
            await stop.wait()
            link_stop.set()
            work_stop.set()
            if server is not None:
                server.stop()
        await self._drain(deliverer, drain_s)

    async def _drain(self, deliverer: Deliverer, drain_s: float) -> None:
        deadline = time.monotonic() + drain_s
        while time.monotonic() < deadline:
            await asyncio.to_thread(self.outbox.seal, self.community_id, self.settings.batch_max)
            result = await deliverer.deliver_one()
            if result is None:
                return
            if result is False:
                await asyncio.sleep(min(0.5, max(0.0, deadline - time.monotonic())))

    def stats(self) -> dict[str, Any]:
        d = self._deliverer
        return {**self.outbox.stats(), "invalid_summaries": self.invalid, "redelivered": self.redelivered,
                "store_failures": self.store_failures,
                "delivery_failures": d.failures if d is not None else 0,
                "signature_refused": d.signature_refused if d is not None else 0,
                "certificate_refused": d.certificate_refused if d is not None else 0,
                "bytes_sent": d.bytes_sent if d is not None else 0,
                **{f"downlink_{k}": v for k, v in (self._downlinker.counts if self._downlinker else {}).items()}}


async def run_bridge(community_id: str, mqtt: MqttEndpoint, settings: BridgeSettings, stop: asyncio.Event,
                     *, stats_file: Path | None = None, drain_s: float = 10.0,
                     household_devices: frozenset[str] = frozenset()) -> None:
    bridge = Bridge(community_id, mqtt, settings, household_devices)
    try:
        await bridge.run(stop, drain_s=drain_s)
    finally:
        try:
            if stats_file is not None:
                write_json_atomically(stats_file, bridge.stats())
        finally:
            bridge.outbox.close()
            bridge.downlink_state.close()
