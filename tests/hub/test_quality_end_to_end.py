"""Quality and rebirth through the real path: a device's raw readings through a real edge
agent and Mosquitto to the hub's store, API and summaries; a gateway whose birth the hub
never saw is asked for a rebirth, once, and its devices show their current state again."""

import asyncio
import contextlib
import json
import time
from pathlib import Path

import aiomqtt
import httpx
import pytest

from contract import topics
from contract.codec import decode_as
from contract.endpoints import MqttEndpoint
from contract.messages import Command, HubSummary
from contract.topology import Community
from edge.agent import EdgeAgent
from edge.settings import EdgeSettings
from tests.conftest import wait_until
from tests.hub.conftest import api_token, serving_hub

pytestmark = pytest.mark.real
C, GW, DEVICE = "xihu-demo", "gw-b1", "b1-th-01"


def _agent(community: Community, mqtt: MqttEndpoint, state: Path) -> EdgeAgent:
    return EdgeAgent(community, GW, mqtt, EdgeSettings(state_dir=state, birth_wait_s=0.2))


async def _device(client: aiomqtt.Client, prefix: str, values: dict[str, float], **extra: object) -> None:
    """What a temperature/humidity sensor on the community's MQTT publishes to its gateway."""
    await client.publish(f"{prefix}/{GW}/{DEVICE}", json.dumps({"ts": time.time(), "values": values, **extra}), qos=1)


async def test_a_bad_reading_is_stored_shown_and_counted_but_raises_no_alert(
        tmp_path: Path, community: Community, mosquitto: MqttEndpoint) -> None:
    summaries: list[HubSummary] = []
    async with serving_hub(tmp_path, community, mosquitto, summary_interval_s=2.0, late_grace_s=0.0) as (url, hub), \
            aiomqtt.Client(mosquitto.host, mosquitto.port) as device, \
            aiomqtt.Client(mosquitto.host, mosquitto.port) as bridge, \
            httpx.AsyncClient(base_url=url, headers=api_token(hub)) as http:
        await bridge.subscribe(topics.hub_summary(C), qos=1)

        async def collect() -> None:
            async for message in bridge.messages:
                summaries.append(decode_as(HubSummary, bytes(message.payload)))  # type: ignore[arg-type]

        collecting = asyncio.create_task(collect())
        agent, stop = _agent(community, mosquitto, tmp_path / "edge"), asyncio.Event()
        run = asyncio.create_task(agent.run(stop))
        await wait_until(lambda: hub.registry.gateways[GW].online, timeout=15)
        prefix = agent.settings.device_topic_prefix
        await _device(device, prefix, {"temperature": 21.0, "humidity": 45.0})
        # 150 °C is beyond what the class can measure: the edge marks it out_of_range.
        await _device(device, prefix, {"temperature": 150.0, "humidity": 46.0})
        # The sensor itself says its temperature element failed.
        await _device(device, prefix, {"temperature": 85.0, "humidity": 47.0}, quality={"temperature": "sensor_fault"})

        async def bad_rows() -> list[dict]:
            rows = (await http.get("/api/telemetry", params={"device": DEVICE, "metric": "temperature"})).json()
            return [r for r in rows if r["quality"] == "bad"] if len(rows) >= 3 else []

        bad = await wait_until(bad_rows, timeout=15)
        shown = next(d for d in (await http.get("/api/devices")).json() if d["id"] == DEVICE)
        summary = await wait_until(lambda: next((s for s in summaries if s.hub is not None
                                                 and s.hub.points_by_quality.get("bad", 0) >= 2), None), timeout=15)
        stats = {(c.building, c.device_class): c for c in summary.cells}[("b1", "temp_humidity")].metrics
        alerts = (await http.get("/api/alerts")).json()
        stop.set()
        await asyncio.wait_for(run, 20)
        collecting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await collecting
    # Stored, with the reason, and counted: none dead-lettered, none hidden.
    assert sorted((r["value"], r["quality_reason"]) for r in bad) == [(85.0, "sensor_fault"), (150.0, "out_of_range")]
    assert shown["last_values"]["temperature"] == 85.0
    assert shown["last_quality"] == {"temperature": {"reason": "sensor_fault", "level": "bad"}}
    assert summary.hub is not None and summary.hub.points_by_quality["good"] >= 4
    assert stats["temperature"].max == 21.0  # the summary's statistics leave the bad values out
    assert [a for a in alerts if a["device"] == DEVICE] == []  # no model alert, no rule alert
    assert agent.counters["marked_bad"] == 2  # points the edge sent marked bad (its own mark and the device's)


async def test_a_gateway_whose_birth_the_hub_never_saw_is_asked_for_a_rebirth_once(
        tmp_path: Path, community: Community, mosquitto: MqttEndpoint) -> None:
    db = tmp_path / "hub"
    db.mkdir()
    async with aiomqtt.Client(mosquitto.host, mosquitto.port) as device, \
            aiomqtt.Client(mosquitto.host, mosquitto.port) as watcher:
        await watcher.subscribe(topics.gateway_command(C, GW), qos=1)
        commands: list[Command] = []

        async def watch() -> None:
            async for message in watcher.messages:
                commands.append(decode_as(Command, bytes(message.payload)))  # type: ignore[arg-type]

        watching = asyncio.create_task(watch())
        async with serving_hub(db, community, mosquitto) as (_, hub):
            first, stop = _agent(community, mosquitto, tmp_path / "edge"), asyncio.Event()
            run = asyncio.create_task(first.run(stop))
            await wait_until(lambda: hub.registry.gateways[GW].online, timeout=15)
        # The hub is replaced while the gateway restarts (a new boot id): the new hub has a
        # database and a broker session of its own, and the run's retained birth is gone (a
        # broker whose retained state was lost). Nothing tells the new hub of the new run.
        stop.set()
        await asyncio.wait_for(run, 20)
        second, stop = _agent(community, mosquitto, tmp_path / "edge"), asyncio.Event()
        run = asyncio.create_task(second.run(stop))
        await asyncio.sleep(1.0)
        await device.publish(topics.gateway_state(C, GW), b"", qos=1, retain=True)
        prefix = second.settings.device_topic_prefix

        replacement = tmp_path / "replacement"
        replacement.mkdir()
        async with serving_hub(replacement, community, mosquitto, rebirth_min_interval_s=3600,
                               client_id="hub-replacement") as (url, hub), \
                httpx.AsyncClient(base_url=url, headers=api_token(hub)) as http:
            assert hub.registry.gateways[GW].boot is None and first.boot != second.boot
            for i in range(20):  # the sensor keeps reporting; the hub hears of a run it never saw born
                await _device(device, prefix, {"temperature": 20.0 + i / 10, "humidity": 50.0})
                await asyncio.sleep(0.1)
            gateway = await wait_until(
                lambda: hub.registry.gateways[GW] if hub.registry.gateways[GW].boot == second.boot else None,
                timeout=15)
            await _device(device, prefix, {"temperature": 23.5, "humidity": 51.0})

            async def current() -> dict | None:
                return next((d for d in (await http.get("/api/devices")).json() if d["id"] == DEVICE and d["online"]
                             and d["last_values"].get("temperature") == 23.5), None)

            shown = await wait_until(current, timeout=15)
            listed = next(g for g in (await http.get("/api/gateways")).json() if g["id"] == GW)
        stop.set()
        await asyncio.wait_for(run, 20)
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watching
    rebirths = [c for c in commands if c.command == "rebirth"]
    assert len(rebirths) == 1, commands  # once, however many readings came first
    assert gateway.online and listed["rebirth_asked"]["reason"] == "no-birth"
    assert second.boot in listed["rebirth_asked"]["detail"]
    assert shown["online"] is True
