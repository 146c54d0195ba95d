"""The city platform's MQTT side: batches from communities through the city's broker
(``city.mqtt``), each answered on ``city/v1/{community}/acks``.

The city's session is persistent and its PUBACK goes out only after the batch is stored
and answered (manual acknowledgement), so a city that stops mid-way is given the batch
again by the broker, and answers it again (the store keeps it once)."""

import asyncio
import base64
import json
import logging
import time
from pathlib import Path

import aiomqtt

from contract.city import CITY_BATCHES_FILTER, BatchAnswer, city_acks_topic, parse_mqtt_batch
from contract.endpoints import MqttEndpoint
from servicekit.mqtt import MqttLink
from simulators.city.receiver import BatchReceiver, BatchRefused

log = logging.getLogger(__name__)


class CityMqtt:
    def __init__(self, endpoint: MqttEndpoint, receiver: BatchReceiver, capture: Path | None = None,
                 client_id: str = "midbrain-city") -> None:
        self.receiver = receiver
        self.capture = capture
        self.unreadable = 0
        self.link = MqttLink(endpoint, client_id=client_id, clean_session=False, manual_ack=True,
                             on_connect=self._subscribe, on_message=self._on_batch)

    async def _subscribe(self, client: aiomqtt.Client) -> None:
        await client.subscribe(CITY_BATCHES_FILTER, qos=1)

    async def _on_batch(self, message: aiomqtt.Message) -> None:
        session = self.link.session
        topic = str(message.topic)
        raw = message.payload if isinstance(message.payload, bytes) else str(message.payload).encode()
        community = topic.split("/")[2]
        try:
            header, body = parse_mqtt_batch(raw)
        except ValueError as exc:
            # Nothing to answer to (no key): counted, kept among the refusals, acknowledged.
            self.unreadable += 1
            self.receiver.store.refused(community, f"MQTT batch without a valid header line: {str(exc)[:200]}")
            self.receiver.store.count_refusal(CITY_BATCHES_FILTER, 400, "unreadable_header")
            log.warning("unreadable batch on %s (%d bytes): %s", topic, len(raw), str(exc)[:200])
            self.link.ack(session, message.mid, message.qos)
            return
        self._record(topic, header.model_dump(), body)
        try:
            if header.community != community:
                reason = f"batch of community {header.community!r} published on {topic}"
                log.warning("refused batch %s: %s", header.key, reason)
                self.receiver.store.refused(community, reason)
                raise BatchRefused(403, reason, "topic_mismatch")
            ack = await asyncio.to_thread(self.receiver.receive, header.community, header.signature, header.encoding,
                                          body, f"mqtt {topic} (batch {header.key})")
            answer = BatchAnswer(key=header.key, status=200, ack=ack)
        except BatchRefused as exc:
            await asyncio.to_thread(self.receiver.store.count_refusal, CITY_BATCHES_FILTER, exc.status, exc.code)
            answer = BatchAnswer(key=header.key, status=exc.status, reason=exc.reason[:1000])
        # Not acknowledged if the answer cannot be published: the broker gives the batch again.
        await self.link.publish(city_acks_topic(community), answer.model_dump_json().encode(), qos=1, timeout=10)
        self.link.ack(session, message.mid, message.qos)

    def _record(self, topic: str, header: dict[str, object], body: bytes) -> None:
        if self.capture is None:
            return
        line = json.dumps({"at": time.time(), "method": "MQTT", "path": topic,
                           "headers": {k: str(v) for k, v in header.items()},
                           "body_b64": base64.b64encode(body).decode()})
        with self.capture.open("a") as fh:
            fh.write(line + "\n")
