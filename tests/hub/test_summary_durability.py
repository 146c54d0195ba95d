"""A summary the hub produced while its broker was unreachable is published after a restart."""

import asyncio
from pathlib import Path

import aiomqtt
import pytest

from contract import topics
from contract.codec import decode_as
from contract.endpoints import MqttEndpoint
from contract.messages import HubSummary
from contract.topology import Community
from hub.service import HubService
from hub.settings import HubSettings
from hub.summaries import SummaryStore
from midbrain.broker import BrokerProcess, free_port

pytestmark = pytest.mark.real


async def test_summaries_survive_a_hub_restart_while_the_broker_is_down(tmp_path: Path, community: Community) -> None:
    port = free_port()
    endpoint = MqttEndpoint(port=port, reconnect_initial_s=0.05, reconnect_max_s=0.2)
    settings = HubSettings(database=tmp_path / "hub.sqlite3", summary_interval_s=0.3, publish_timeout_s=0.2,
                           stride_s=60)
    async with HubService(settings, community, endpoint):  # nothing listens on the port
        await asyncio.sleep(1.0)
    store = SummaryStore(settings.database)
    kept = [w for w, _ in store.unpublished_summaries()]
    store.close()
    assert len(kept) >= 2  # the interval ones and the final one

    with BrokerProcess("mosquitto", port, tmp_path / "broker"):
        async with aiomqtt.Client("127.0.0.1", port) as bridge_side:
            await bridge_side.subscribe(topics.hub_summary(community.id), qos=1)
            async with HubService(settings.model_copy(update={"summary_interval_s": 3600}), community, endpoint) as hub:
                await hub.wait_ready()
                got: list[float] = []
                async with asyncio.timeout(10):
                    async for message in bridge_side.messages:
                        got.append(decode_as(HubSummary, message.payload).window_start)  # type: ignore[arg-type]
                        if len(got) == len(kept):
                            break
    assert got == kept  # every one, oldest first
    store = SummaryStore(settings.database)
    assert store.unpublished_summaries() == []  # including the second run's own final summary
    store.close()


async def test_concurrent_publishers_publish_each_kept_summary_once(tmp_path: Path, community: Community,
                                                                   mosquitto: MqttEndpoint) -> None:
    settings = HubSettings(database=tmp_path / "hub.sqlite3", summary_interval_s=3600, stride_s=3600)
    store = SummaryStore(settings.database)
    for i in range(5):
        store.keep_summary(1000.0 + i, HubSummary(community=community.id, window_start=1000.0 + i,
                                                  window_end=1001.0 + i, cells=()).model_dump_json().encode())
    store.close()
    async with aiomqtt.Client(mosquitto.host, mosquitto.port) as bridge_side:
        await bridge_side.subscribe(topics.hub_summary(community.id), qos=1)
        async with HubService(settings, community, mosquitto) as hub:
            await hub.wait_ready()
            await asyncio.gather(hub.summaries.publish_kept(), hub.summaries.publish_kept())
        got: list[float] = []
        try:
            async with asyncio.timeout(2):
                async for message in bridge_side.messages:
                    got.append(decode_as(HubSummary, message.payload).window_start)  # type: ignore[arg-type]
        except TimeoutError:
            pass
    kept = [w for w in got if w < 2000]  # leave out the service's own final summary
    assert kept == [1000.0, 1001.0, 1002.0, 1003.0, 1004.0]


async def test_a_hub_whose_broker_is_gone_stops_at_once_and_keeps_its_summaries(tmp_path: Path,
                                                                                community: Community) -> None:
    """The demo's supervisor killed outright takes the broker and the hub down together: the
    hub must not wait out its publish timeout for a broker that will not come back (it did,
    for 10 s per summary, and the supervisor test saw a hub still alive 30 s later)."""
    endpoint = MqttEndpoint(port=free_port(), reconnect_initial_s=0.05, reconnect_max_s=0.2)
    settings = HubSettings(database=tmp_path / "hub.sqlite3", summary_interval_s=0.5, publish_timeout_s=30,
                           stride_s=60)
    hub = HubService(settings, community, endpoint)  # nothing listens on the port
    await hub.__aenter__()
    await asyncio.sleep(1.2)  # the summary task is now waiting for the broker to publish an interval
    loop = asyncio.get_running_loop()
    began = loop.time()
    await hub.__aexit__(None, None, None)
    assert loop.time() - began < 5  # not the 30 s publish timeout
    store = SummaryStore(settings.database)
    kept = store.unpublished_summaries()
    store.close()
    assert len(kept) >= 2  # the interval's and the final one: kept for the next start
