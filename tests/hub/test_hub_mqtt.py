"""The hub through its real paths: Mosquitto in, HTTP out, messages typed with mosquitto_pub."""

import asyncio
import json
import subprocess
import time
from pathlib import Path

import aiomqtt
import httpx
import pytest

from contract import topics
from contract.codec import decode_as
from contract.endpoints import MqttEndpoint
from contract.messages import HubSummary
from contract.topology import Community
from tests.conftest import mosquitto_client, wait_until
from tests.hub.conftest import api_token, serving_hub

pytestmark = pytest.mark.real


def pub(mqtt: MqttEndpoint, topic: str, payload: str | bytes, *extra: str) -> None:
    args = [mosquitto_client("mosquitto_pub"), "-h", mqtt.host, "-p", str(mqtt.port), "-q", "1", "-t", topic, *extra]
    if isinstance(payload, bytes):
        subprocess.run([*args, "-s"], input=payload, check=True, timeout=10)
    else:
        subprocess.run([*args, "-m", payload], check=True, timeout=10)


async def test_typed_telemetry_is_stored_and_malformed_is_dead_lettered(
        tmp_path: Path, community: Community, mosquitto: MqttEndpoint) -> None:
    async with serving_hub(tmp_path, community, mosquitto) as (url, hub), \
            httpx.AsyncClient(base_url=url, headers=api_token(hub, "supervisor")) as http:
        # Exactly as docs/protocol.md shows it.
        pub(mosquitto, "mb/v1/xihu-demo/gw-b1/b1-th-01/telemetry",
            '{"v":1,"seq":1,"boot":"manual-1","ts":1764230000.5,"device":"b1-th-01",'
            '"metrics":{"temperature":21.5,"humidity":48.2}}')
        async def telemetry() -> list[dict[str, object]]:
            return (await http.get("/api/telemetry", params={"device": "b1-th-01"})).json()  # type: ignore[no-any-return]

        rows = await wait_until(telemetry)
        assert {(r["metric"], r["value"]) for r in rows} == {("temperature", 21.5), ("humidity", 48.2)}

        bad = [
            ("mb/v1/xihu-demo/gw-b1/b1-th-01/telemetry", b'{"v":1,"seq":2,', "invalid-json"),
            ("mb/v1/xihu-demo/gw-b1/b1-th-01/telemetry", b"\xff\xfe\xfd", "invalid-utf8"),
            ("mb/v1/xihu-demo/gw-b1/ghost-1/telemetry",
             b'{"v":1,"seq":3,"boot":"m","ts":1,"device":"ghost-1","metrics":{"temperature":1}}', "unknown-device"),
            ("mb/v9/xihu-demo/gw-b1/b1-th-01/telemetry", b"{}", "bad-topic"),
            ("mb/v1/xihu-demo/gw-b1/b1-th-01/telemetry", b"{" + b" " * 100_000 + b"}", "oversize"),
        ]
        for topic, payload, _ in bad:
            pub(mosquitto, topic, payload)

        async def dead() -> list[dict[str, object]] | None:
            got = (await http.get("/api/dead-letters")).json()
            return got if len(got) == len(bad) else None

        letters = await wait_until(dead)
        assert sorted((d["topic"], d["reason"]) for d in letters) == sorted((t, r) for t, _, r in bad)
        oversize = next(d for d in letters if d["reason"] == "oversize")
        assert oversize["size"] == 100_002
        only_json = (await http.get("/api/dead-letters", params={"reason": "invalid-json"})).json()
        assert [d["raw_text"] for d in only_json] == ['{"v":1,"seq":2,']
        ghost = (await http.get("/api/dead-letters", params={"topic": "mb/v1/xihu-demo/gw-b1/ghost"})).json()
        assert [d["reason"] for d in ghost] == ["unknown-device"]
        newest = max(d["received_at"] for d in letters)
        assert (await http.get("/api/dead-letters", params={"since": newest + 1})).json() == []
        assert len((await http.get("/api/dead-letters", params={"until": newest + 1})).json()) == len(bad)

        # The hub keeps serving and counts what it refused.
        assert (await http.get("/healthz")).json()["status"] == "ok"
        # The API docs are off unless hub.api_docs (Swagger UI loads from a CDN): see test_web_security.
        assert (await http.get("/docs")).status_code == 404 and (await http.get("/openapi.json")).status_code == 404
        metrics = (await http.get("/metrics")).text
        assert 'midbrain_hub_dead_letters_total{reason="invalid-json"} 1.0' in metrics
        assert "midbrain_hub_telemetry_stored_total 1.0" in metrics
        pub(mosquitto, "mb/v1/xihu-demo/gw-b1/b1-th-01/telemetry",
            '{"v":1,"seq":4,"boot":"manual-1","ts":1764230002.5,"device":"b1-th-01","metrics":{"temperature":21.7}}')
        await wait_until(lambda: hub.stats()["stored"] == 2)


async def test_birth_and_will_drive_online_state(tmp_path: Path, community: Community, mosquitto: MqttEndpoint) -> None:
    async with serving_hub(tmp_path, community, mosquitto) as (url, hub):
        birth = json.dumps({"v": 1, "state": "online", "ts": time.time(), "boot": "r1", "seq": 0, "software": "manual",
                            "devices": [{"id": "b1-th-01", "class": "temp_humidity"}]})
        pub(mosquitto, "mb/v1/xihu-demo/gw-b1/state", birth, "-r")
        pub(mosquitto, "mb/v1/xihu-demo/gw-b1/b1-th-01/telemetry",
            json.dumps({"v": 1, "seq": 1, "boot": "r1", "ts": time.time(), "device": "b1-th-01",
                        "metrics": {"temperature": 20.0}}))
        await wait_until(lambda: hub.registry.online(hub.registry.devices["b1-th-01"]))
        pub(mosquitto, "mb/v1/xihu-demo/gw-b1/state", '{"v":1,"state":"offline","boot":"r1"}', "-r")
        await wait_until(lambda: not hub.registry.gateways["gw-b1"].online)
        async with httpx.AsyncClient(base_url=url, headers=api_token(hub)) as http:
            devices = {d["id"]: d for d in (await http.get("/api/devices", params={"building": "b1"})).json()}
        assert devices["b1-th-01"]["online"] is False
        assert all(d["building"] == "b1" for d in devices.values())


async def test_summaries_are_published_for_the_bridge(tmp_path: Path, community: Community,
                                                      mosquitto: MqttEndpoint) -> None:
    async with aiomqtt.Client(mosquitto.host, mosquitto.port) as listener:
        await listener.subscribe(topics.hub_summary(community.id), qos=1)
        async with serving_hub(tmp_path, community, mosquitto, summary_interval_s=1.0) as (_, hub):
            now = time.time()
            for seq, (dt, total) in enumerate(((0.0, 100.0), (0.2, 100.25)), start=1):
                pub(mosquitto, "mb/v1/xihu-demo/gw-b2/b2-wm-01/telemetry",
                    json.dumps({"v": 1, "seq": seq, "boot": "r", "ts": now + dt, "device": "b2-wm-01",
                                "metrics": {"flow_lpm": 12.0, "total_m3": total}}))
            for seq, category in enumerate(("repair", "张三 13812345678"), start=3):  # the second: not a category
                pub(mosquitto, "mb/v1/xihu-demo/gw-kiosk/k1-kiosk-01/event",
                    json.dumps({"v": 1, "seq": seq, "boot": "r", "ts": now, "device": "k1-kiosk-01",
                                "event": "service_request", "severity": "info", "data": {"category": category}},
                               ensure_ascii=False))
            await wait_until(lambda: hub.stats()["stored"] == 2 and hub.stats()["events_stored"] == 2)
            async with asyncio.timeout(10):
                async for message in listener.messages:
                    summary = decode_as(HubSummary, message.payload)  # type: ignore[arg-type]
                    if any(c.readings for c in summary.cells):
                        break
    cell = next(c for c in summary.cells if c.building == "b2" and c.device_class == "water_meter")
    assert cell.readings == 2 and cell.metrics["flow_lpm"].mean == 12.0
    # Device ids appear only in the list of offline devices (hub to bridge, inside the
    # community; the bridge hashes shared ones and drops household ones).
    assert "b2-wm-01" not in summary.model_copy(update={"offline_devices": ()}).model_dump_json()
    assert summary.utilities is not None and summary.utilities.water_m3 == 0.25 and summary.utilities.water_meters == 1
    assert summary.requests == {"repair": 1, "other": 1}  # free text never becomes a category
    assert "13812345678" not in message.payload.decode()  # type: ignore[union-attr]
    assert summary.work_orders is not None and summary.hub is not None
    assert summary.hub.readings_stored == 2 and summary.hub.devices >= 20


async def test_counters_survive_a_restart_and_agree_with_the_store(tmp_path: Path, community: Community,
                                                                   mosquitto: MqttEndpoint) -> None:
    def reading(seq: int) -> str:
        return json.dumps({"v": 1, "seq": seq, "boot": "r", "ts": time.time(), "device": "b1-th-01",
                           "metrics": {"temperature": 20.0 + seq}})

    async with serving_hub(tmp_path, community, mosquitto) as (_, hub):
        for seq in (1, 2):
            pub(mosquitto, "mb/v1/xihu-demo/gw-b1/b1-th-01/telemetry", reading(seq))
        pub(mosquitto, "mb/v1/xihu-demo/gw-b1/b1-th-01/telemetry", b"not json")
        await wait_until(lambda: hub.stats()["stored"] == 2 and hub.stats()["dead_lettered"] == 1)
    async with serving_hub(tmp_path, community, mosquitto) as (_, hub):
        assert (hub.stats()["stored"], hub.stats()["dead_lettered"]) == (2, 1)
        pub(mosquitto, "mb/v1/xihu-demo/gw-b1/b1-th-01/telemetry", reading(3))
        await wait_until(lambda: hub.stats()["stored"] == 3)
        assert hub.stats()["received_telemetry"] == 4 and hub.stats()["summaries"] >= 1  # run 1's final summary
        assert hub.store is not None
        assert hub.store.counts()["dead_letters"] == 1
        assert len({r["seq"] for r in hub.store.telemetry("b1-th-01", None, None, 100)}) == 3


async def test_readings_queued_while_the_hub_was_down_are_attributed_to_their_announced_run(
        tmp_path: Path, community: Community, mosquitto: MqttEndpoint) -> None:
    birth = json.dumps({"v": 1, "state": "online", "ts": time.time(), "boot": "run-7", "seq": 0, "software": "t"})
    reading = json.dumps({"v": 1, "seq": 1, "boot": "run-7", "ts": time.time(), "device": "b1-th-01",
                          "metrics": {"temperature": 20.0}})
    async with serving_hub(tmp_path, community, mosquitto) as (_, hub):
        pub(mosquitto, "mb/v1/xihu-demo/gw-b1/state", birth, "-r")
        await wait_until(lambda: hub.registry.gateways["gw-b1"].online)
    # The hub is down; the broker queues this reading for the hub's persistent session.
    pub(mosquitto, "mb/v1/xihu-demo/gw-b1/b1-th-01/telemetry", reading)
    async with serving_hub(tmp_path, community, mosquitto) as (_, hub):
        await wait_until(lambda: hub.stats()["stored"] == 1)
        assert (hub.stats()["stored_announced"], hub.stats()["stored_unannounced"]) == (1, 0)
