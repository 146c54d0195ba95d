"""NGSI-LD transport: Smart Data Model entities, checked against the models' attribute
definitions, upserted to the city's context-broker endpoint over real sockets."""

import subprocess
import sys
from pathlib import Path

import aiomqtt
import httpx
import pytest

from contract import topics
from contract.city import CommunitySummary
from contract.codec import encode
from contract.endpoints import MqttEndpoint
from contract.messages import HubSummary, MetricStats, SummaryCell, UtilityUse, WorkOrderStats
from contract.ngsild import check, entities
from tests.city_and_bridge import running_bridge, serving_city
from tests.conftest import wait_until

C = "xihu-demo"
REPO = Path(__file__).resolve().parents[2]
WEST_LAKE = (120.1485, 30.2422)


def _summary(**extra: object) -> CommunitySummary:
    return CommunitySummary(
        key="c1:1", community="c1", window_start=1764230000.0, window_end=1764230060.0, devices=20, online=18,
        readings=100, alerts={"fire": 1}, alerts_by_severity={"critical": 1}, requests={"repair": 5},
        environment={"temperature": 21.5, "humidity": 48.0, "pm2_5": 12.0, "pm10": 20.0},
        utilities=UtilityUse(water_m3=1.5, water_meters=6, electricity_kwh=3.2, electricity_meters=6),
        work_orders=WorkOrderStats(opened=1, resolved=1, overdue=0, median_minutes_to_resolve=12.5), **extra)


@pytest.mark.integration
def test_the_model_definitions_are_those_pysmartdatamodels_carries() -> None:
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "smart_data_models.py"), "--check"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.unit
def test_a_summary_becomes_entities_that_fit_their_models() -> None:
    out = entities(_summary(), WEST_LAKE)
    assert {e["type"] for e in out} == {"KeyPerformanceIndicator", "AirQualityObserved", "WaterConsumptionObserved",
                                        "DeviceMeasurement"}
    assert [check(e) for e in out] == [[]] * len(out)
    air = next(e for e in out if e["type"] == "AirQualityObserved")
    assert air["pm25"]["value"] == 12.0 and air["relativeHumidity"]["value"] == 48.0
    assert air["location"]["value"] == {"type": "Point", "coordinates": list(WEST_LAKE)}
    assert air["@context"][0].endswith("dataModel.Environment/master/context.jsonld")
    kpis = {e["id"].split(":")[4]: e["kpiValue"]["value"] for e in out if e["type"] == "KeyPerformanceIndicator"}
    assert kpis == {"online-share": 0.9, "alerts": 1, "critical-alerts": 1, "work-orders-overdue": 0,
                    "minutes-to-resolve": 12.5, "requests": 5}
    # Without a location there is no AirQualityObserved (the model requires one).
    assert "AirQualityObserved" not in {e["type"] for e in entities(_summary(), None)}


@pytest.mark.unit
@pytest.mark.parametrize(("change", "problem"), [
    (lambda e: e.update(co2={"type": "Property", "value": 400}), "not on the egress allow-list"),
    (lambda e: e.update(residentName={"type": "Property", "value": "王小明"}), "not an attribute of the model"),
    (lambda e: e.update(pm25={"type": "Property", "value": "12"}), "must hold a number"),
    (lambda e: e.update(refDevice={"type": "Property", "value": "urn:x"}), "must be a Relationship"),
    (lambda e: e.pop("location"), "location is required"),
    (lambda e: e.update({"@context": ["https://example.org/ctx.jsonld"]}), "@context"),
])
def test_the_check_names_what_does_not_fit(change, problem: str) -> None:  # type: ignore[no-untyped-def]
    air = next(e for e in entities(_summary(), WEST_LAKE) if e["type"] == "AirQualityObserved")
    change(air)
    assert any(problem in p for p in check(air)), check(air)


@pytest.mark.real
async def test_a_bridge_upserts_each_window_as_entities_and_a_revision_replaces_them(
        tmp_path: Path, mosquitto: MqttEndpoint) -> None:
    def hub_summary(i: int, temperature: float, revision: int = 0) -> bytes:
        return encode(HubSummary(
            community=C, window_start=1_764_230_000.0 + 60 * i, window_end=1_764_230_060.0 + 60 * i, revision=revision,
            cells=(SummaryCell(building="b1", device_class="temp_humidity", devices=2, online=2, readings=10,
                               metrics={"temperature": MetricStats(count=10, mean=temperature, min=20, max=30),
                                        "humidity": MetricStats(count=10, mean=50.0, min=40, max=60)}),),
            utilities=UtilityUse(water_m3=2.0, water_meters=8)))

    async with serving_city(tmp_path, {C: b"k"}, capture=tmp_path / "egress.jsonl") as (city, store), \
            running_bridge(C, mosquitto, outbox=tmp_path / "outbox.sqlite3", community_key="k", city_url=city.url,
                           transport="ngsi-ld", ngsi_ld_location=WEST_LAKE) as bridge, \
            aiomqtt.Client(mosquitto.host, mosquitto.port) as hub, httpx.AsyncClient(base_url=city.url) as api:
        for i in range(3):
            await hub.publish(topics.hub_summary(C), hub_summary(i, 21.0 + i), qos=1)

        async def air() -> list[dict[str, object]]:
            return (await api.get("/ngsi-ld/v1/entities", params={"type": "AirQualityObserved"})).json()  # type: ignore[no-any-return]
        await wait_until(lambda: bridge.stats()["acknowledged"] == 3, timeout=15)
        assert sorted(e["temperature"]["value"] for e in await air()) == [21.0, 22.0, 23.0]  # type: ignore[index]
        water = (await api.get("/ngsi-ld/v1/entities", params={"type": "WaterConsumptionObserved"})).json()
        assert [e["waterConsumption"]["value"] for e in water] == [2.0, 2.0, 2.0]

        await hub.publish(topics.hub_summary(C), hub_summary(0, 25.0, revision=1), qos=1)  # late data for window 0
        await wait_until(lambda: bridge.stats()["acknowledged"] == 4, timeout=15)
        assert sorted(e["temperature"]["value"] for e in await air()) == [22.0, 23.0, 25.0]  # type: ignore[index]
        assert store.stats()["refused_batches"] == 0
        log = bridge.outbox.egress_log(10)
        assert all(str(e["destination"]).endswith("/ngsi-ld/v1/entityOperations/upsert") for e in log)
