"""The device twin at work: desired state to commands (held while the gateway is away, sent
when it is there), acks, reconcile after a birth, rebirth requests, thresholds to ingest."""

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiomqtt
import pytest

from contract import topics
from contract.endpoints import MqttEndpoint
from contract.topology import Community
from hub.accounts import Accounts
from hub.device_twin import DeviceTwin
from hub.registry import Registry
from hub.thresholds import ThresholdWatch
from hub.twin import DesiredPatch, Threshold, TwinStore
from servicekit.mqtt import MqttLink
from tests.hub.components import unconnected_link

C = "xihu-demo"


def _twin(tmp_path: Path, registry: Registry, link: MqttLink) -> DeviceTwin:
    db = tmp_path / "hub.sqlite3"
    return DeviceTwin(TwinStore(db), registry, Accounts(db), ThresholdWatch(), link, C, publish_timeout_s=2,
                      rebirth_min_interval_s=60)


@pytest.mark.integration
async def test_desired_state_while_the_gateway_is_away(tmp_path: Path, community: Community) -> None:
    registry = Registry(community, offline_after_s=30)
    twin = _twin(tmp_path, registry, unconnected_link())
    view = await twin.set_desired("b1-th-01", DesiredPatch(interval_s=5, thresholds={"temperature": Threshold(high=30)}),
                                  "user:zhang")
    assert view["desired"]["version"] == 1 and view["desired"]["interval_s"] == 5  # type: ignore[index]
    assert view["sync"] == "pending"
    [cmd] = view["commands"]  # type: ignore[misc]
    assert cmd["command"] == "set_interval" and cmd["sent_at"] is None  # held for the gateway's next birth
    assert twin.thresholds.limits["b1-th-01"] == {"temperature": (None, 30.0, None)}  # ingest checks it now
    assert [a["action"] for a in twin.accounts.audit_trail("device:b1-th-01", 10)] == ["device.desired"]
    # A restarted hub: the thresholds come back from the twin's store.
    again = _twin(tmp_path, registry, unconnected_link())
    again.restore()
    assert again.thresholds.limits == {"b1-th-01": {"temperature": (None, 30.0, None)}}
    await twin.ask_rebirth("gw-b1", "no-birth", "test")  # the broker away: logged, not raised


@asynccontextmanager
async def _running(link: MqttLink) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(link.run(stop))
    await link.wait_connected(10)
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


@pytest.mark.real
async def test_commands_are_sent_acked_and_reconciled(tmp_path: Path, community: Community,
                                                      mosquitto: MqttEndpoint) -> None:
    registry = Registry(community, offline_after_s=30)
    registry.birth("gw-b1", "boot-1", "edge/1", time.time())
    link = MqttLink(mosquitto, client_id="test-twin-pub")
    twin = _twin(tmp_path, registry, link)
    async with _running(link), aiomqtt.Client(mosquitto.host, mosquitto.port) as edge:
        await edge.subscribe(topics.gateway_command(C, "gw-b1"), qos=1)

        async def next_command() -> dict[str, object]:
            async with asyncio.timeout(10):
                async for message in edge.messages:
                    return json.loads(bytes(message.payload))  # type: ignore[arg-type, no-any-return]
            raise AssertionError("no command")

        view = await twin.set_desired("b1-th-01", DesiredPatch(interval_s=5), "user:zhang")
        sent = await next_command()
        assert sent["command"] == "set_interval" and sent["value"] == 5 and sent["device"] == "b1-th-01"
        assert twin.view("b1-th-01")["commands"][0]["sent_at"] is not None  # type: ignore[index]
        await twin.acked(str(sent["id"]), "ok", "", time.time())
        assert twin.view("b1-th-01")["sync"] == "in_sync" and view["sync"] == "pending"

        await twin.reconcile("gw-b1")  # born again: the whole desired state once more
        assert (await next_command())["command"] == "set_interval"
        await twin.reconcile("gw-b2")  # none of its devices has a desired state: nothing sent
        await twin.ask_rebirth("gw-b1", "seq-gap", "seq 1, then 5000")
        assert (await next_command())["command"] == "rebirth"
