"""Batches through the city's MQTT broker (``bridge.transport = "mqtt"``).

Each batch is published with QoS 1 on ``city/v1/{community}/batches``
(``contract.city.mqtt_batch``); the city answers on ``city/v1/{community}/acks``. Both
sides keep persistent sessions (clean_session false), so an answer published while the
bridge is away is delivered when it is back. The bridge deletes a batch only on an answer
that accepts it; without an answer within ``http_timeout_s`` the batch is sent again under
the same key (the city keeps it once). An answer that arrives late still counts.
"""

import asyncio
import logging

import aiomqtt
from pydantic import ValidationError

from cloud_bridge.delivery import TransportError
from cloud_bridge.outbox import Outbox
from contract.city import (COMMUNITY_HEADER, SIGNATURE_HEADER, BatchAnswer, MqttBatchHeader, city_acks_topic,
                           city_batches_topic, mqtt_batch)
from contract.endpoints import MqttEndpoint
from servicekit.mqtt import MqttLink, NotConnected

log = logging.getLogger(__name__)


class MqttTransport:
    def __init__(self, endpoint: MqttEndpoint, community: str, client_id: str, outbox: Outbox,
                 timeout_s: float) -> None:
        self.community = community
        self.outbox = outbox
        self.timeout_s = timeout_s
        self._waiting: dict[str, asyncio.Future[BatchAnswer]] = {}
        self.late_answers = 0
        self.link = MqttLink(endpoint, client_id=client_id, clean_session=False, on_connect=self._subscribe,
                             on_message=self._on_answer)

    @property
    def destination(self) -> str:
        ep = self.link.endpoint
        return f"mqtt://{ep.host}:{ep.port}/{city_batches_topic(self.community)}"

    async def _subscribe(self, client: aiomqtt.Client) -> None:
        await client.subscribe(city_acks_topic(self.community), qos=1)

    async def _on_answer(self, message: aiomqtt.Message) -> None:
        raw = message.payload if isinstance(message.payload, bytes) else str(message.payload).encode()
        try:
            answer = BatchAnswer.model_validate_json(raw)
        except ValidationError as exc:
            log.error("unreadable answer from the city on %s: %s", message.topic, exc.errors()[0]["msg"])
            return
        waiter = self._waiting.get(answer.key)
        if waiter is not None and not waiter.done():
            waiter.set_result(answer)
        elif answer.status == 200:
            # The answer to a batch we stopped waiting for (the city was slow, or we restarted):
            # it was stored, so it is done.
            self.late_answers += 1
            await asyncio.to_thread(self.outbox.acknowledged, answer.key)

    async def send(self, key: str, community: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
        header = MqttBatchHeader(community=headers[COMMUNITY_HEADER], key=key, signature=headers[SIGNATURE_HEADER],
                                 encoding="gzip" if headers.get("content-encoding") == "gzip" else "")
        waiter = self._waiting[key] = asyncio.get_running_loop().create_future()
        try:
            await self.link.publish(city_batches_topic(community), mqtt_batch(header, body), qos=1,
                                    timeout=self.timeout_s)
            answer = await asyncio.wait_for(waiter, self.timeout_s)
        except (NotConnected, TimeoutError, aiomqtt.MqttError) as exc:
            raise TransportError(f"no answer from the city over MQTT within {self.timeout_s:.0f} s "
                                 f"({type(exc).__name__})") from exc
        finally:
            self._waiting.pop(key, None)
        return answer.status, answer.ack.model_dump_json() if answer.ack is not None else answer.reason
