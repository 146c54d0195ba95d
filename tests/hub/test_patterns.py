"""The pattern detectors (water leak at night, elevator faults): their models on simulator
data, and the hub raising their alerts from readings that arrive through Mosquitto."""

import asyncio
import json
import time
from collections import Counter
from pathlib import Path
from zoneinfo import ZoneInfo

import aiomqtt
import httpx
import numpy as np
import pytest

from cloud_bridge.privacy import to_city
from contract import topics
from contract.classes import DeviceClass
from contract.codec import decode_as
from contract.endpoints import MqttEndpoint
from contract.messages import HubSummary
from contract.topology import Community
from hub.inference import MODELS
from hub.patterns import NightHours, PatternDetector
from simulators.signals import Device, Fault
from tests.conftest import wait_until
from tests.hub.conftest import api_token, serving_hub

ALWAYS_NIGHT = NightHours(0, 24, ZoneInfo("Asia/Shanghai"))
NOW = 1_795_000_000.0


def feed(detector: PatternDetector, device_id: str, device: Device, start: float, seconds: float, step: float) -> None:
    for t in np.arange(0.0, seconds, step):
        detector.add(device_id, start + float(t), device.sample(float(t)))


@pytest.mark.unit
@pytest.mark.parametrize("fault", [None, "car_stuck", "door_fault"])
def test_the_elevator_model_names_the_fault_of_a_simulated_car(fault: str | None) -> None:
    detector = PatternDetector(MODELS / "elevator_fault", ALWAYS_NIGHT)
    faults = (Fault(fault, 100.0, 300.0),) if fault else ()
    for seed in range(5):
        feed(detector, f"car-{seed}", Device(DeviceClass.ELEVATOR, 500 + seed, faults, start_epoch=NOW), NOW, 240.0, 2.0)
    scores = detector.score(NOW + 238.0)
    assert len(scores) == 5
    if fault is None:
        assert all(s.score < detector.threshold for s in scores), scores
    else:
        assert all(s.score >= detector.threshold and s.kind == fault for s in scores), scores


@pytest.mark.unit
def test_the_leak_model_flags_a_night_of_continuous_flow_and_not_a_normal_night() -> None:
    night = NightHours(23, 5, ZoneInfo("Asia/Shanghai"))
    detector = PatternDetector(MODELS / "water_leak", night)
    midnight = NOW // 86400 * 86400 - 8 * 3600  # 00:00 in Shanghai
    assert night.contains(midnight) and not night.contains(midnight + 6 * 3600)
    for i in range(6):
        faults = (Fault("leak", 0.0, 1e9, magnitude=1.5),) if i % 2 else ()
        feed(detector, f"wm-{i}", Device(DeviceClass.WATER_METER, 900 + i, faults, start_epoch=midnight),
             midnight, 3 * 3600.0, 60.0)
    scores = {s.device: s for s in detector.score(midnight + 3 * 3600.0 - 60)}
    assert set(scores) == {f"wm-{i}" for i in range(6)}
    for i in range(6):
        assert (scores[f"wm-{i}"].score >= detector.threshold) == bool(i % 2), scores
    assert detector.score(midnight + 6 * 3600.0) == []  # by day there is nothing to say


@pytest.mark.unit
def test_a_new_version_of_a_detectors_model_keeps_the_readings_gathered(tmp_path: Path) -> None:
    import shutil

    from hub.inference import ModelError

    detector = PatternDetector(MODELS / "water_leak", ALWAYS_NIGHT)
    feed(detector, "wm-1", Device(DeviceClass.WATER_METER, 1, (Fault("leak", 0.0, 1e9, magnitude=2.0),),
                                  start_epoch=NOW - 3 * 3600), NOW - 3 * 3600, 3 * 3600, 300)
    before = detector.score(NOW)
    assert before  # a night of readings to carry over
    folder = tmp_path / "000001-1.0.1"
    shutil.copytree(MODELS / "water_leak", folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps({**manifest, "version": "1.0.1"}))
    newer = detector.replaced_by(folder)
    assert newer.model.name == "water_leak@1.0.1" and newer.name == "water_leak"
    assert [(s.device, s.score) for s in newer.score(NOW)] == [(s.device, s.score) for s in before]  # same night
    (folder / "manifest.json").write_text(json.dumps({**manifest, "inputs": {**manifest["inputs"],
                                                                              "device_class": "elevator"}}))
    with pytest.raises(ModelError, match="of elevator"):
        detector.replaced_by(folder)


@pytest.mark.real
async def test_a_stuck_car_and_a_leaking_meter_raise_one_alert_each_through_mosquitto(
        tmp_path: Path, community: Community, mosquitto: MqttEndpoint) -> None:
    # Night all day, so that the leak detector speaks during the test.
    async with aiomqtt.Client(mosquitto.host, mosquitto.port) as listener, \
            serving_hub(tmp_path, community, mosquitto, night_hours=(0, 24), summary_interval_s=1.0) as (url, hub), \
            httpx.AsyncClient(base_url=url, headers=api_token(hub)) as http:
        await listener.subscribe(topics.hub_summary(community.id), qos=1)
        now = time.time()
        car = Device(DeviceClass.ELEVATOR, 77, (Fault("car_stuck", 0.0, 1e9),), start_epoch=now - 90)
        meter = Device(DeviceClass.WATER_METER, 78, (Fault("leak", 0.0, 1e9, magnitude=2.0),),
                       start_epoch=now - 3 * 3600)
        calm = Device(DeviceClass.ELEVATOR, 79, start_epoch=now - 90)
        async with aiomqtt.Client(mosquitto.host, mosquitto.port) as client:
            seq = 0

            async def send(gateway: str, device: str, ts: float, metrics: dict[str, float]) -> None:
                nonlocal seq
                seq += 1
                body = {"v": 1, "seq": seq, "boot": "pattern-test", "ts": ts, "device": device, "metrics": metrics}
                await client.publish(topics.device_telemetry("xihu-demo", gateway, device), json.dumps(body), qos=1)

            for t in np.arange(0.0, 90.0, 2.0):
                await send("gw-b1", "b1-elev-01", now - 90 + t, car.sample(float(t)))
                await send("gw-b2", "b2-elev-01", now - 90 + t, calm.sample(float(t)))
            for t in np.arange(0.0, 3 * 3600.0, 300.0):  # every 5 minutes for 3 hours
                await send("gw-b1", "b1-wm-01", now - 3 * 3600 + t, meter.sample(float(t)))
        await wait_until(lambda: hub.stats()["stored"] == seq, timeout=20)

        async def alerts() -> list[dict[str, object]] | None:
            await hub.scoring.score_now()
            got = [a for a in (await http.get("/api/alerts")).json() if a["kind"] in ("car_stuck", "water_leak",
                                                                                       "door_fault")]
            return got if len(got) >= 2 else None

        raised = await wait_until(alerts, timeout=15)
        assert sorted((a["device"], a["kind"], a["severity"]) for a in raised) == [
            ("b1-elev-01", "car_stuck", "critical"), ("b1-wm-01", "water_leak", "warning")]
        assert {a["model"] for a in raised} == {"elevator_fault@1.0.0", "water_leak@1.0.0"}
        await hub.scoring.score_now()  # the same incidents: no second alert
        again = [a for a in (await http.get("/api/alerts")).json() if a["kind"] in ("car_stuck", "water_leak")]
        assert len(again) == 2
        orders = (await http.get("/api/work-orders", headers=await staff_headers(hub, http))).json()
        assert {(o["category"], o["device"]) for o in orders} >= {("elevator", "b1-elev-01"),
                                                                  ("water_leak", "b1-wm-01")}

        # The summaries say which alerts were on a household's device (the flat's water meter),
        # and what leaves for the city does not show that one alone (1 < k = 5).
        alerts: Counter[str] = Counter()
        household: Counter[str] = Counter()
        async with asyncio.timeout(15):
            async for message in listener.messages:
                summary = decode_as(HubSummary, message.payload)  # type: ignore[arg-type]
                alerts.update(summary.alerts)
                household.update(summary.household_alerts)
                if summary.household_alerts:
                    assert summary.household_alerts_by_severity == {"warning": 1}
                    out = to_city(summary)
                    assert "water_leak" not in out.alerts and "household" not in out.alerts
                    assert ("alerts on household devices", "suppressed") in {(n.what, n.action) for n in out.suppressed}
                if alerts["car_stuck"] and alerts["water_leak"]:
                    break
        assert household == {"water_leak": 1} and alerts["car_stuck"] == 1


async def staff_headers(hub: object, http: httpx.AsyncClient) -> dict[str, str]:
    from hub.service import HubService

    assert isinstance(hub, HubService) and hub.accounts is not None
    hub.accounts.add_user("patterns-staff", "a-long-password", "staff")
    login = await http.post("/api/login", json={"name": "patterns-staff", "password": "a-long-password"})
    return {"Cookie": f"mb_session={login.cookies['mb_session']}"}
