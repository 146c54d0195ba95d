"""The bridge acknowledges a hub summary only after its outbox has committed it: a bridge
that fails (or dies) in between gets the summary again from the broker, through a real
Mosquitto and a persistent session."""

import asyncio
from pathlib import Path

import aiomqtt
import pytest

from cloud_bridge.service import Bridge
from cloud_bridge.settings import BridgeSettings
from contract import topics
from contract.codec import encode
from contract.endpoints import MqttEndpoint
from contract.messages import HubSummary, SummaryCell
from tests.conftest import wait_until

pytestmark = pytest.mark.real
C = "xihu-demo"


async def test_a_summary_the_outbox_could_not_commit_is_delivered_again(
        tmp_path: Path, mosquitto: MqttEndpoint) -> None:
    endpoint = mosquitto.model_copy(update={"reconnect_initial_s": 0.05, "reconnect_max_s": 0.2})
    bridge = Bridge(C, endpoint, BridgeSettings(outbox=tmp_path / "outbox.sqlite3", community_key="k", city_url="http://127.0.0.1:9",
                                                http_port=None, retry_initial_s=5, retry_max_s=5))
    real_add, failures = bridge.outbox.add, []

    def add_failing_once(summary, *args):  # type: ignore[no-untyped-def]
        if not failures:
            failures.append(summary.key)
            raise OSError("disk I/O error (injected)")  # as a full or failing disk would
        return real_add(summary, *args)

    bridge.outbox.add = add_failing_once  # type: ignore[method-assign]
    stop = asyncio.Event()
    run = asyncio.create_task(bridge.run(stop, drain_s=0))
    try:
        await bridge.link.wait_connected(10)
        summary = HubSummary(community=C, window_start=1_000.0, window_end=1_060.0, cells=(
            SummaryCell(building="b1", device_class="smoke", devices=2, online=2, readings=5),))
        async with aiomqtt.Client(mosquitto.host, mosquitto.port) as hub:
            await hub.publish(topics.hub_summary(C), encode(summary), qos=1)
        await wait_until(lambda: bridge.outbox.stats()["produced"] >= 1, timeout=15)
        await asyncio.sleep(0.5)  # nothing more arrives: the redelivered copy was acknowledged
        stats = bridge.stats()
    finally:
        stop.set()
        await asyncio.wait_for(run, 30)
        bridge.outbox.close()
    assert failures and bridge.link.connects >= 2  # the failed attempt ended the session; the broker resent
    assert stats["produced"] == 1 and stats["redelivered"] == 0 and stats["store_failures"] == 1
