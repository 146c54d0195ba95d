"""Batches through a city MQTT broker (bridge.transport = "mqtt"): a real Mosquitto for the
community, another for the city, the city platform answering on its acks topic. Summaries
made while the city platform is down arrive once it is back, each once; a batch with a bad
signature is answered with the refusal."""

import asyncio
import json
from pathlib import Path

import aiomqtt
import pytest

from contract.city import BatchAnswer, MqttBatchHeader, city_acks_topic, city_batches_topic, mqtt_batch, sign
from contract.endpoints import MqttEndpoint
from midbrain.broker import BrokerProcess, free_port
from simulators.city.service import run_city
from simulators.city.store import CityStore
from simulators.settings import CitySettings
from tests.city_and_bridge import publish_summaries, running_bridge
from tests.conftest import wait_until

pytestmark = pytest.mark.real

C = "xihu-demo"


async def test_batches_through_the_city_broker_arrive_once_across_a_city_outage(
        tmp_path: Path, mosquitto: MqttEndpoint) -> None:
    city_port = free_port()
    city_broker = MqttEndpoint(port=city_port, reconnect_initial_s=0.1, reconnect_max_s=0.3)
    db = tmp_path / "city.sqlite3"
    city_settings = CitySettings(http_port=free_port(), database=db, community_keys={C: "k"}, mqtt=city_broker,
                                 capture=tmp_path / "egress.jsonl")
    hub_broker = mosquitto.model_copy(update={"reconnect_initial_s": 0.1, "reconnect_max_s": 0.3})
    settings = {"outbox": tmp_path / "outbox.sqlite3", "community_key": "k", "transport": "mqtt",
                "city_mqtt": city_broker, "city_url": "http://127.0.0.1:9", "batch_max": 2, "retry_initial_s": 0.1,
                "retry_max_s": 0.5, "http_timeout_s": 1.0}

    def at_city() -> dict[str, int]:
        store = CityStore(db)
        try:
            return {str(s["key"]): int(s["readings"]) for s in store.summaries(C, 100)}  # type: ignore[call-overload]
        finally:
            store.close()

    with BrokerProcess("mosquitto", city_port, tmp_path / "city-broker"):
        city_stop = asyncio.Event()
        city = asyncio.create_task(run_city(city_settings, city_stop))
        try:
            async with running_bridge(C, hub_broker, **settings) as bridge:
                await publish_summaries(mosquitto, C, range(4))
                await wait_until(lambda: len(at_city()) == 4, timeout=15)

                city_stop.set()  # the city platform goes away; its broker keeps its session
                await city
                await publish_summaries(mosquitto, C, range(4, 9))
                await wait_until(lambda: bridge.stats()["delivery_failures"] >= 1, timeout=15)
                assert len(at_city()) == 4

                city_stop = asyncio.Event()
                city = asyncio.create_task(run_city(city_settings, city_stop))
                await wait_until(lambda: bridge.stats()["acknowledged"] == 9, timeout=30)
                got = at_city()
                assert sorted(got.values()) == list(range(9))  # every one, each once
                assert bridge.stats()["pending"] == bridge.stats()["in_batches"] == 0

            # A batch not signed with the community's key: answered with the refusal.
            async with aiomqtt.Client("127.0.0.1", city_port) as forger:
                await forger.subscribe(city_acks_topic(C), qos=1)
                body = json.dumps({"v": 1, "key": "forged-1", "community": C, "sent_at": 1.0, "summaries": [
                    {"key": f"{C}:1", "community": C, "window_start": 0, "window_end": 60, "devices": 1,
                     "online": 1, "readings": 999, "revision": 5}]}).encode()
                header = MqttBatchHeader(community=C, key="forged-1", signature=sign(b"not-the-key", body))
                await forger.publish(city_batches_topic(C), mqtt_batch(header, body), qos=1)
                async with asyncio.timeout(10):
                    async for message in forger.messages:
                        answer = BatchAnswer.model_validate_json(message.payload)  # type: ignore[arg-type]
                        if answer.key == "forged-1":
                            break
            assert answer.status == 401 and "signature" in answer.reason
            assert at_city() == got
        finally:
            city_stop.set()
            await city
    store = CityStore(db)
    assert store.stats()["refused_batches"] == 1
    store.close()
    assert (tmp_path / "egress.jsonl").read_text().count('"method": "MQTT"') >= 5  # what the egress scan reads
