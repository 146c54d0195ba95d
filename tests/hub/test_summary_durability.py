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
from hub.store import HubStore
from midbrain.broker import BrokerProcess, free_port

pytestmark = pytest.mark.real


async def test_summaries_survive_a_hub_restart_while_the_broker_is_down(tmp_path: Path, community: Community) -> None:
    port = free_port()
    endpoint = MqttEndpoint(port=port, reconnect_initial_s=0.05, reconnect_max_s=0.2)
    settings = HubSettings(database=tmp_path / "hub.sqlite3", summary_interval_s=0.3, publish_timeout_s=0.2,
                           stride_s=60)
    async with HubService(settings, community, endpoint):  # nothing listens on the port
        await asyncio.sleep(1.0)
    store = HubStore(settings.database)
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
    store = HubStore(settings.database)
    assert store.unpublished_summaries() == []  # including the second run's own final summary
    store.close()
