"""The learned normals in the running hub, through real Mosquitto: a device warms up,
activates, raises one ``unusual`` alert on a fault, and /api/normals shows it all."""

import math
import time
from pathlib import Path

import aiomqtt
import httpx
import numpy as np
import pytest

from contract import topics
from contract.codec import encode
from contract.endpoints import MqttEndpoint
from contract.messages import Telemetry
from contract.topology import Community
from hub.settings import NormalsSettings
from tests.conftest import wait_until
from tests.hub.conftest import api_token, serving_hub

pytestmark = pytest.mark.real
C = "xihu-demo"


async def test_a_device_warms_up_activates_and_raises_unusual_on_a_fault(
        tmp_path: Path, community: Community, mosquitto: MqttEndpoint) -> None:
    normals = NormalsSettings(enabled=True, warmup_readings=120, warmup_min_s=0, refit_s=86400)
    rng = np.random.default_rng(11)
    async with serving_hub(tmp_path, community, mosquitto, normals=normals) as (url, hub), \
            aiomqtt.Client(mosquitto.host, mosquitto.port) as gw, \
            httpx.AsyncClient(base_url=url, headers=api_token(hub)) as http:
        assert (await http.get("/api/normals", headers={"Authorization": ""})).status_code == 401
        start = time.time() - 3600
        seq = 0

        async def send(n: int, fault: bool = False) -> None:
            nonlocal seq
            for _ in range(n):
                seq += 1
                phase = 2 * math.pi * seq / 60  # a cycle every 10 minutes: warm-up sees two
                t = 22 + math.sin(phase) + rng.normal(0, 0.2) + (6.0 if fault else 0.0)
                h = 50 - 3 * math.sin(phase) + rng.normal(0, 0.6)
                await gw.publish(topics.device_telemetry(C, "gw-b1", "b1-th-01"), encode(Telemetry(
                    seq=seq, boot="r1", ts=start + 10.0 * seq, device="b1-th-01",
                    metrics={"temperature": round(t, 3), "humidity": round(h, 3)})), qos=1)

        await send(60)
        await wait_until(lambda: hub.stats()["stored"] == 60)
        await hub.scoring.score_now()
        warming = (await http.get("/api/normals")).json()
        assert [(n["device"], n["state"], n["warmup"]["readings"], n["warmup"]["of"]) for n in warming] == [
            ("b1-th-01", "warming_up", 60, 120)]

        await send(240)
        await wait_until(lambda: hub.stats()["stored"] == 300)
        await hub.scoring.score_now()
        active = (await http.get("/api/normals")).json()[0]
        assert active["state"] == "active" and active["model_version"] == "b1-th-01.1" and active["spent"] == 0
        assert active["budget"]["alerts_per_week"] == 1.0 and active["last_score"] is not None
        folder = tmp_path / "normals" / "b1-th-01" / "b1-th-01.1"  # next to the hub's database
        assert (folder / "manifest.json").is_file() and (folder / "normal.onnx").is_file()
        assert not [a for a in hub.alerting.log.latest(50) if a["kind"] == "unusual"]

        await send(30, fault=True)  # +6 °C at once
        await wait_until(lambda: hub.stats()["stored"] == 330)

        async def unusual() -> list[dict[str, object]]:
            await hub.scoring.score_now()
            return [a for a in (await http.get("/api/alerts")).json() if a["kind"] == "unusual"]

        alerts = await wait_until(unusual)
        assert [(a["device"], a["metric"], a["severity"], a["model"]) for a in alerts] == [
            ("b1-th-01", "temperature+humidity", "warning", "normal-b1-th-01@b1-th-01.1")]
        orders = (await http.get("/api/work-orders")).json()  # an alert like any other: it opens an order
        assert [o["title"] for o in orders if o["device"] == "b1-th-01"] == [
            "1号楼大堂温湿度：温度+湿度读数偏离常态"]
        shown = (await http.get("/api/normals")).json()[0]
        assert shown["spent"] == 1 and shown["alarm"] is True
        metrics = (await http.get("/metrics")).text
        assert 'midbrain_hub_normals_devices{state="active"} 1.0' in metrics
        assert "midbrain_hub_normals_fits_total 1.0" in metrics
        assert "midbrain_hub_normals_alarms 1.0" in metrics
