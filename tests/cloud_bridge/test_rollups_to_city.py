"""Roll-up summaries (an hour, say, beside 5-minute windows) travel under keys of their own,
and the city serves each granularity apart."""

from pathlib import Path

import aiomqtt
import httpx
import pytest

from contract import topics
from contract.codec import encode
from contract.endpoints import MqttEndpoint
from contract.messages import HubSummary, SummaryCell
from tests.city_and_bridge import publish_summaries, running_bridge, serving_city
from tests.conftest import wait_until

pytestmark = pytest.mark.real
C = "xihu-demo"


async def test_rollups_and_interval_windows_are_kept_apart_from_hub_to_city(tmp_path: Path,
                                                                           mosquitto: MqttEndpoint) -> None:
    endpoint = MqttEndpoint(host=mosquitto.host, port=mosquitto.port)
    async with serving_city(tmp_path, {C: b"k"}) as (city, store), \
            running_bridge(C, endpoint, outbox=tmp_path / "outbox.sqlite3", community_key="k",
                           city_url=city.url) as bridge:
        await publish_summaries(mosquitto, C, range(3), readings=7)  # windows 1000, 1060, 1120
        async with aiomqtt.Client(mosquitto.host, mosquitto.port) as hub:
            for revision, readings in ((0, 21), (1, 22)):  # the roll-up of all three, then its revision
                await hub.publish(topics.hub_summary(C), encode(HubSummary(
                    community=C, window_start=1_000.0, window_end=1_180.0, period_s=180, revision=revision,
                    cells=(SummaryCell(building="b1", device_class="smoke", devices=5, online=5,
                                       readings=readings),))), qos=1)
        await wait_until(lambda: store.stats()["summaries"] == 4 and bridge.stats()["acknowledged"] >= 4, timeout=20)

        async with httpx.AsyncClient(base_url=city.url) as client:
            latest = (await client.get(f"/api/communities/{C}/latest")).json()
            hourly = (await client.get(f"/api/communities/{C}/latest", params={"period": 180})).json()
            series = (await client.get(f"/api/communities/{C}/series")).json()
            rolled = (await client.get(f"/api/communities/{C}/series", params={"period": 180})).json()
            missing = await client.get(f"/api/communities/{C}/latest", params={"period": 3600})
            listed = (await client.get("/api/communities")).json()
    assert latest["summary"]["window_start"] == 1_120.0 and latest["summary"]["period_s"] == 0
    assert hourly["summary"]["key"] == f"{C}:1000000:p180" and hourly["summary"]["revision"] == 1
    assert hourly["summary"]["readings"] == 22 and hourly["kpis"]["period_s"] == 180
    assert [s["window_start"] for s in series] == [1_000.0, 1_060.0, 1_120.0]
    assert [(s["window_start"], s["revision"]) for s in rolled] == [(1_000.0, 1)]
    assert missing.status_code == 404 and "period 3600" in missing.json()["detail"]
    assert listed[0]["periods"] == [0, 180]
