"""The ingest writer through a real Mosquitto: messages validated, committed in batches with
their dead letters, what a batch carries for others handed on after the commit, and a
threshold crossing flushed at once rather than at the next timer."""

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiomqtt
import pytest

from contract import topics
from contract.codec import encode
from contract.endpoints import MqttEndpoint
from contract.messages import Birth
from contract.topology import Community
from hub.inference import WindowModel
from hub.ingest import Ingestor, Pending
from hub.metrics import HubMetrics
from hub.registry import Registry
from hub.store import HubStore
from hub.windows import Windows
from hub.writer import IngestWriter
from tests.conftest import wait_until

pytestmark = pytest.mark.real
C = "xihu-demo"
TOPIC = topics.device_telemetry(C, "gw-b1", "b1-th-01")


def _reading(seq: int, value: float) -> bytes:
    return json.dumps({"v": 1, "seq": seq, "boot": "run-1", "ts": time.time(), "device": "b1-th-01",
                       "metrics": {"temperature": value}}).encode()


@asynccontextmanager
async def _writer(tmp_path: Path, community: Community, mqtt: MqttEndpoint, batches: list[Pending],
                  write_interval_s: float) -> AsyncIterator[IngestWriter]:
    metrics = HubMetrics()
    ingestor = Ingestor(Registry(community, offline_after_s=30), Windows(WindowModel(), 60), metrics,
                        max_payload_bytes=64 * 1024)
    store = HubStore(tmp_path / "hub.sqlite3")

    async def after_commit(batch: Pending) -> None:
        batches.append(batch)

    writer = IngestWriter(mqtt, "test-writer", ingestor, store, metrics, after_commit, ack_batch=1000,
                          queue_size=10_000, write_interval_s=write_interval_s)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(writer.link.run(stop)), asyncio.create_task(writer.run(stop))]
    await writer.link.wait_connected(10)
    try:
        yield writer
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 10)
        await writer.flush()
        store.close()


async def test_messages_are_committed_and_handed_on(tmp_path: Path, community: Community,
                                                    mosquitto: MqttEndpoint) -> None:
    batches: list[Pending] = []
    async with _writer(tmp_path, community, mosquitto, batches, 0.05) as writer, \
            aiomqtt.Client(mosquitto.host, mosquitto.port) as edge:
        await edge.publish(topics.gateway_state(C, "gw-b1"), encode(Birth(ts=time.time(), boot="run-1", seq=0,
                                                                           software="t")), qos=1)
        for seq in (1, 2, 3):
            await edge.publish(TOPIC, _reading(seq, 21.0), qos=1)
        await edge.publish(TOPIC, b"{not json", qos=1)
        await wait_until(lambda: writer.store.counts() == {"telemetry_rows": 3, "dead_letters": 1}, timeout=10)
        assert writer.connected
        assert writer.store.counters()["stored"] == 3  # counted in the transaction of the rows
    assert [b[0] for batch in batches for b in batch.births] == ["gw-b1"]
    assert sum(len(batch.dead) for batch in batches) == 1 and writer.metrics.totals["stored"] == 3


async def test_a_threshold_crossing_is_flushed_without_waiting_for_the_timer(
        tmp_path: Path, community: Community, mosquitto: MqttEndpoint) -> None:
    batches: list[Pending] = []
    async with _writer(tmp_path, community, mosquitto, batches, 60.0) as writer, \
            aiomqtt.Client(mosquitto.host, mosquitto.port) as edge:
        writer.ingestor.thresholds.set_limits("b1-th-01", {"thresholds": {"temperature": {"high": 30.0}}})
        await edge.publish(topics.gateway_state(C, "gw-b1"), encode(Birth(ts=time.time(), boot="run-1", seq=0,
                                                                           software="t")), qos=1)
        await edge.publish(TOPIC, _reading(1, 35.0), qos=1)
        crossings = await wait_until(lambda: [c for batch in batches for c in batch.crossings], timeout=10)
        assert [(c[1], c[2], c[4]) for c in crossings] == [("b1-th-01", "temperature", "high")]
        assert writer.store.counts()["telemetry_rows"] == 1  # committed before it was handed on
