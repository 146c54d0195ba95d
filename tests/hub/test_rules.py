"""Combination rules: smoke and a temperature rise in one building are one fire incident."""

import json
import time
from pathlib import Path

import aiomqtt
import httpx
import numpy as np
import pytest

from contract import topics
from contract.classes import DeviceClass
from contract.endpoints import MqttEndpoint
from contract.topology import Community
from hub.rules import DEFAULT_RULES, CombinationRules
from simulators.signals import Device, Fault
from tests.conftest import wait_until
from tests.hub.conftest import api_token, serving_hub


@pytest.mark.unit
def test_a_rule_fires_once_when_all_its_conditions_meet_in_one_building_within_its_window() -> None:
    rules = CombinationRules(DEFAULT_RULES)
    assert rules.observe(0.0, "b1-smoke-01", "b1", "smoke", "smoke_density", "fire") == []
    # Another building's temperature rise is another scope.
    assert rules.observe(10.0, "b2-th-01", "b2", "temp_humidity", "temperature", "fire") == []
    # Humidity is not the rule's temperature condition.
    assert rules.observe(20.0, "b1-th-01", "b1", "temp_humidity", "humidity", "threshold") == []
    fired = rules.observe(30.0, "b1-th-01", "b1", "temp_humidity", "temperature", "rate_of_change")
    assert [(c.rule.name, c.scope_key, c.devices) for c in fired] == [("fire_confirmed", "b1",
                                                                       ("b1-smoke-01", "b1-th-01"))]
    # The same incident goes on: no second alert.
    assert rules.observe(60.0, "b1-smoke-02", "b1", "smoke", "smoke_density", "fire") == []
    # Too far apart: a smoke alert alone, an hour after the temperature rise, is not the rule.
    assert rules.observe(4000.0, "b1-smoke-01", "b1", "smoke", "smoke_density", "spike") == []
    assert [c.at for c in rules.observe(4100.0, "b1-th-02", "b1", "temp_humidity", "temperature", "fire")] == [4100.0]


@pytest.mark.real
async def test_smoke_and_heat_in_one_building_open_one_fire_safety_order(
        tmp_path: Path, community: Community, mosquitto: MqttEndpoint) -> None:
    async with serving_hub(tmp_path, community, mosquitto) as (url, hub), \
            httpx.AsyncClient(base_url=url, headers=api_token(hub)) as http:
        now = time.time()
        smoke = Device(DeviceClass.SMOKE, 11, (Fault("fire", 20.0, 1e9),))
        heat = Device(DeviceClass.TEMP_HUMIDITY, 12, (Fault("fire", 20.0, 1e9),))
        async with aiomqtt.Client(mosquitto.host, mosquitto.port) as client:
            for seq, t in enumerate(np.arange(0.0, 40.0, 1.0), start=1):
                ts = now - 40 + float(t)
                for gw, device, sim in (("gw-b1", "b1-smoke-01", smoke), ("gw-b1", "b1-th-01", heat)):
                    body = {"v": 1, "seq": seq * 2 + (device == "b1-th-01"), "boot": "rules", "ts": ts,
                            "device": device, "metrics": sim.sample(float(t))}
                    await client.publish(topics.device_telemetry("xihu-demo", gw, device), json.dumps(body), qos=1)
        await wait_until(lambda: hub.stats()["stored"] == 80, timeout=20)

        async def combined() -> list[dict[str, object]] | None:
            await hub.scoring.score_now()
            got = [a for a in (await http.get("/api/alerts")).json() if a["kind"] == "combined"]
            return got or None

        raised = await wait_until(combined, timeout=15)
        assert [(a["metric"], a["severity"], a["model"]) for a in raised] == [
            ("fire_confirmed", "critical", "rule:fire_confirmed")]
        singles = {(a["device"], a["kind"]) for a in (await http.get("/api/alerts")).json() if a["kind"] != "combined"}
        assert {("b1-smoke-01", "fire"), ("b1-th-01", "fire")} <= singles
        await hub.scoring.score_now()
        assert len([a for a in (await http.get("/api/alerts")).json() if a["kind"] == "combined"]) == 1
        assert hub.workorders is not None
        orders = [o for o in hub.workorders.find() if o["alert_key"].endswith(":fire_confirmed:combined")]
        assert [(o["category"], o["severity"]) for o in orders] == [("fire_safety", "critical")]
        assert "疑似火情" in orders[0]["title"]
