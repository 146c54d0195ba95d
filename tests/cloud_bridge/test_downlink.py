"""The city's voice, down the real path: city platform (HTTP) -> bridge -> Mosquitto -> hub,
and each answer back up. A notice reaches the staff API, a configuration change and a model
update are applied, a model that does not load and a forged item are refused, and the city
is told which and why."""

import asyncio
import base64
import json
import sqlite3
import time
from pathlib import Path

import httpx
import pytest

from contract.downlink import DownlinkItem, Notice, new_signing_key, sign_item
from contract.endpoints import MqttEndpoint
from contract.topology import Community
from hub.inference import DEFAULT_MODEL_DIR, MODELS
from tests.city_and_bridge import running_bridge, serving_city
from tests.conftest import wait_until
from tests.hub.conftest import api_token, serving_hub

pytestmark = pytest.mark.real

C = "xihu-demo"
KEY = "k-xihu"
PRIVATE, PUBLIC = new_signing_key()
TOKEN = "operator-token"


async def test_notices_configuration_and_models_come_down_signed_and_every_answer_goes_up(
        tmp_path: Path, community: Community, mosquitto: MqttEndpoint) -> None:
    manifest = json.loads((DEFAULT_MODEL_DIR / "manifest.json").read_text())
    onnx = (DEFAULT_MODEL_DIR / manifest["file"]).read_bytes()
    endpoint = mosquitto.model_copy(update={"reconnect_initial_s": 0.1, "reconnect_max_s": 0.3})
    async with serving_city(tmp_path, {C: KEY.encode()}, signing_key=PRIVATE, operator_token=TOKEN) as (city, store), \
            running_bridge(C, endpoint, outbox=tmp_path / "outbox.sqlite3", community_key=KEY, city_url=city.url,
                           city_public_key=PUBLIC, downlink_poll_s=0.2) as bridge, \
            httpx.AsyncClient(base_url=city.url, headers={"authorization": f"Bearer {TOKEN}"}) as operator:
        async def issue(**what: object) -> int:
            r = await operator.post("/api/v1/downlink", json={"community": C, **what})
            assert r.status_code == 201, r.text
            return int(r.json()["seq"])

        async def city_status(seq: int) -> tuple[str, str]:
            items = (await operator.get("/api/downlink", params={"community": C})).json()
            item = next(i for i in items if i["seq"] == seq)
            return item["status"], item["reason"]

        async with serving_hub(tmp_path, community, mosquitto, city_public_key=PUBLIC) as (url, hub), \
                httpx.AsyncClient(base_url=url, headers=api_token(hub)) as staff:
            notice = await issue(notice={"level": "emergency", "title": "台风预警", "body": "今晚关闭地下车库"})
            config = await issue(config={"summary_interval_s": 120})
            model = await issue(model={"version": "2.1.1", "manifest": {**manifest, "version": "2.1.1"},
                                       "file_b64": base64.b64encode(onnx).decode()})
            broken = await issue(model={"version": "2.1.2", "manifest": {
                **manifest, "version": "2.1.2", "inputs": {**manifest["inputs"], "features": ["z_last"]}},
                "file_b64": base64.b64encode(onnx).decode()})
            # A forgery: in the city's queue, but signed with a key that is not the city's.
            forged = store.next_seq(C)
            fake = sign_item(new_signing_key()[0], DownlinkItem(seq=forged, community=C, issued_at=0.0,
                                                                body=Notice(title="假通知：请转账")))
            store.issue(C, forged, "notice", json.dumps(fake.model_dump()))

            async def all_answered() -> bool:
                items = (await operator.get("/api/downlink", params={"community": C})).json()
                return len(items) == 5 and all(i["status"] != "issued" for i in items)
            await wait_until(all_answered, timeout=20)

            assert await city_status(notice) == ("applied", "")
            assert await city_status(config) == ("applied", "")
            assert await city_status(model) == ("applied", "")
            status, reason = await city_status(broken)
            assert status == "refused" and "does not load" in reason and "features" in reason
            status, reason = await city_status(forged)
            assert status == "refused" and "bad signature" in reason

            notices = (await staff.get("/api/notices")).json()
            assert [(n["title"], n["level"]) for n in notices] == [("台风预警", "emergency")]  # not the forgery
            assert hub.summaries.interval_s == 120
            assert hub.scoring.model.name == "window_anomaly@2.1.1" and hub.model_reload.events[-1]["from"] == "city"
            down = (await staff.get("/api/downlink")).json()
            assert {i["seq"]: i["status"] for i in down["items"]} == {
                notice: "applied", config: "applied", model: "applied", broken: "refused"}
            assert forged not in {i["seq"] for i in down["items"]}  # the bridge kept it from the hub
        assert bridge.stats()["downlink_refused_here"] == 1

        # What the city set outlives a hub restart.
        async with serving_hub(tmp_path, community, mosquitto, city_public_key=PUBLIC) as (_, hub):
            assert hub.summaries.interval_s == 120 and hub.scoring.model.name == "window_anomaly@2.1.1"


async def test_a_pattern_detectors_model_comes_down_too(tmp_path: Path, community: Community,
                                                        mosquitto: MqttEndpoint) -> None:
    """The leak detector's model, from the city: applied and kept across a restart; one that
    would read other metrics than the detector it replaces is refused, and the city told."""
    folder = MODELS / "water_leak"
    manifest = json.loads((folder / "manifest.json").read_text())
    onnx = base64.b64encode((folder / manifest["file"]).read_bytes()).decode()
    endpoint = mosquitto.model_copy(update={"reconnect_initial_s": 0.1, "reconnect_max_s": 0.3})
    async with serving_city(tmp_path, {C: KEY.encode()}, signing_key=PRIVATE, operator_token=TOKEN) as (city, _), \
            running_bridge(C, endpoint, outbox=tmp_path / "outbox.sqlite3", community_key=KEY, city_url=city.url,
                           city_public_key=PUBLIC, downlink_poll_s=0.2), \
            httpx.AsyncClient(base_url=city.url, headers={"authorization": f"Bearer {TOKEN}"}) as operator:
        async def answer(model: dict[str, object]) -> tuple[str, str]:
            r = await operator.post("/api/v1/downlink", json={"community": C, "model": model})
            assert r.status_code == 201, r.text
            seq = r.json()["seq"]

            async def answered() -> tuple[str, str] | None:
                item = next(i for i in (await operator.get("/api/downlink", params={"community": C})).json()
                            if i["seq"] == seq)
                return (item["status"], item["reason"]) if item["status"] != "issued" else None
            return await wait_until(answered, timeout=20)

        async with serving_hub(tmp_path, community, mosquitto, city_public_key=PUBLIC) as (_, hub):
            assert hub.scoring.patterns["water_meter"].model.name == "water_leak@1.0.0"
            assert await answer({"name": "water_leak", "version": "1.0.1", "manifest": {**manifest, "version": "1.0.1"},
                                 "file_b64": onnx}) == ("applied", "")
            assert hub.scoring.patterns["water_meter"].model.name == "water_leak@1.0.1"
            assert hub.scoring.model.name.startswith("window_anomaly@")  # the window model untouched
            other = {**manifest, "version": "1.0.2", "inputs": {**manifest["inputs"], "metrics": ["flow_lpm"]}}
            status, reason = await answer({"name": "water_leak", "version": "1.0.2", "manifest": other,
                                           "file_b64": onnx})
            assert status == "refused" and "reads flow_lpm" in reason, reason
            assert hub.scoring.patterns["water_meter"].model.name == "water_leak@1.0.1"
        async with serving_hub(tmp_path, community, mosquitto, city_public_key=PUBLIC) as (_, hub):
            assert hub.scoring.patterns["water_meter"].model.name == "water_leak@1.0.1"


async def test_operators_alone_may_issue(tmp_path: Path) -> None:
    async with serving_city(tmp_path, {C: KEY.encode()}, signing_key=PRIVATE, operator_token=TOKEN) as (city, store), \
            httpx.AsyncClient(base_url=city.url) as client:
        body = {"community": C, "notice": {"title": "x"}}
        assert (await client.post("/api/v1/downlink", json=body)).status_code == 401
        assert (await client.post("/api/v1/downlink", json=body,
                                  headers={"authorization": "Bearer wrong"})).status_code == 401
        r = await client.get("/api/v1/downlink", params={"after": 0}, headers={"x-midbrain-community": C})
        assert r.status_code == 401  # a community's items only to that community, signed
        assert store.downlink(C, 10) == []


async def test_the_city_holds_the_request_so_an_item_comes_down_at_once_and_asking_costs_little(
        tmp_path: Path, mosquitto: MqttEndpoint) -> None:
    """Long polling: the bridge asks once per downlink_wait_s while there is nothing, and an
    item issued meanwhile comes down at once, not at the next downlink_poll_s (set far off
    here). Every request the bridge makes is counted where the city received it."""
    capture = tmp_path / "egress.jsonl"

    def asked() -> int:
        lines = capture.read_text().splitlines() if capture.exists() else []
        return sum(1 for line in lines if json.loads(line)["method"] == "GET")

    async with serving_city(tmp_path, {C: KEY.encode()}, signing_key=PRIVATE, operator_token=TOKEN,
                            capture=capture) as (city, _), \
            running_bridge(C, mosquitto, outbox=tmp_path / "outbox.sqlite3", community_key=KEY, city_url=city.url,
                           city_public_key=PUBLIC, downlink_wait_s=2.0, downlink_poll_s=60) as bridge, \
            httpx.AsyncClient(base_url=city.url, headers={"authorization": f"Bearer {TOKEN}"}) as operator:
        await asyncio.sleep(5.2)  # idle: asked at 0, 2 and 4 s
        assert 2 <= asked() <= 4
        r = await operator.post("/api/v1/downlink", json={"community": C, "notice": {"title": "停水通知"}})
        assert r.status_code == 201, r.text
        issued = time.monotonic()
        await wait_until(lambda: bridge.stats()["downlink_fetched"] == 1, timeout=10)
        assert time.monotonic() - issued < 1.5  # held request answered at once (poll: 60 s)
    requests = [json.loads(line) for line in capture.read_text().splitlines()]
    assert all(r["path"].startswith("/api/v1/downlink?after=") and "wait=2" in r["path"] for r in requests)


async def test_a_bridge_whose_downlink_cannot_go_on_stops_and_says_why(tmp_path: Path, mosquitto: MqttEndpoint) -> None:
    """The asking runs on its own task: when it fails (here reading the last item number
    from its database), the bridge fails with it instead of carrying on without a downlink."""
    from cloud_bridge.service import Bridge
    from cloud_bridge.settings import BridgeSettings

    async with serving_city(tmp_path, {C: KEY.encode()}, signing_key=PRIVATE, operator_token=TOKEN) as (city, _):
        bridge = Bridge(C, mosquitto, BridgeSettings(http_port=None, outbox=tmp_path / "outbox.sqlite3",
                                                     community_key=KEY, city_url=city.url, city_public_key=PUBLIC,
                                                     downlink_wait_s=0.5, downlink_poll_s=0.2))
        stop = asyncio.Event()
        run = asyncio.create_task(bridge.run(stop, drain_s=0))
        try:
            await bridge.link.wait_connected(10)

            def disk_gone() -> int:
                raise sqlite3.OperationalError("disk I/O error")

            bridge.downlink_state.last_seq = disk_gone  # type: ignore[method-assign]
            with pytest.raises(ExceptionGroup) as failed:
                await asyncio.wait_for(run, 10)
            assert failed.group_contains(sqlite3.OperationalError, match="disk I/O error")
        finally:
            stop.set()
            if not run.done():
                await asyncio.wait_for(run, 10)
            bridge.outbox.close()
