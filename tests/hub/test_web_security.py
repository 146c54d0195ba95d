"""The hub's HTTP surface against what an attacker on the network (or on another port of the
same host) would try, through a real uvicorn server on a real socket: reads without a login,
the role matrix (kiosk and volunteer included), login floods, huge and inflating bodies,
cross-origin requests, headers, the API docs, and inputs that were 500s."""

import asyncio
import gzip
import json
import statistics
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import httpx
import pytest

from contract import topics
from contract.codec import encode
from contract.endpoints import MqttEndpoint
from contract.messages import Birth, Telemetry
from contract.topology import Community
from tests.conftest import wait_until
from tests.hub.conftest import api_token, serving_hub

pytestmark = pytest.mark.real
C = "xihu-demo"
PASSWORD = "correct horse battery"

# Every read the hub serves, each needing a login: (path, the least role that may read it).
READS = [("/api/devices", "staff"), ("/api/gateways", "staff"), ("/api/stats", "staff"),
         ("/api/telemetry", "staff"), ("/api/windows", "staff"), ("/api/alerts", "staff"),
         ("/api/dead-letters", "staff"), ("/api/downlink", "staff"), ("/api/models", "staff"),
         ("/api/devices/b1-wm-101/twin", "staff"), ("/api/devices/b1-wm-101/status-history", "staff"),
         ("/api/work-orders", "volunteer"), ("/api/notices", "volunteer"), ("/api/work-order-categories", "volunteer"),
         ("/api/me", "volunteer"), ("/api/users", "admin"), ("/api/audit", "supervisor")]


async def _household_reading(mosquitto: MqttEndpoint, hub: object) -> str:
    """A household water meter's reading reaches the hub; returns its device id."""
    meter = next(d for d in (await _devices(hub)) if d.startswith("b1-wm"))
    async with aiomqtt.Client(mosquitto.host, mosquitto.port) as gw:
        await gw.publish(topics.gateway_state(C, "gw-b1"), encode(Birth(ts=time.time(), boot="r1", seq=0,
                                                                         software="test")), qos=1, retain=True)
        await gw.publish(topics.device_telemetry(C, "gw-b1", meter), encode(Telemetry(
            seq=1, boot="r1", ts=time.time(), device=meter, metrics={"total_m3": 123.456})), qos=1)
    await wait_until(lambda: hub.stats()["stored"] == 1)  # type: ignore[attr-defined]
    return meter


async def _devices(hub: object) -> list[str]:
    return sorted(hub.registry.devices)  # type: ignore[attr-defined]


async def test_every_read_needs_a_login_and_healthz_and_metrics_hold_no_personal_data(
        tmp_path: Path, community: Community, mosquitto: MqttEndpoint) -> None:
    async with serving_hub(tmp_path, community, mosquitto) as (url, hub), httpx.AsyncClient(base_url=url) as http:
        assert hub.accounts is not None
        hub.accounts.add_user("wang", PASSWORD, "staff", "王师傅")
        meter = await _household_reading(mosquitto, hub)
        reads = [(p.replace("b1-wm-101", meter), role) for p, role in READS]
        anonymous = {p: (await http.get(p)).status_code for p, _ in reads}
        async with http.stream("GET", "/api/stream") as live:
            anonymous["/api/stream"] = live.status_code
        assert anonymous == {p: 401 for p in anonymous}, anonymous
        for role in ("volunteer", "staff", "supervisor", "admin"):
            headers = api_token(hub, role)  # type: ignore[arg-type]
            got = {p: (await http.get(p, headers=headers)).status_code for p, _ in reads}
            rank = ("volunteer", "staff", "supervisor", "admin").index
            assert got == {p: 200 if rank(role) >= rank(least) else 403 for p, least in reads}, (role, got)
        telemetry = (await http.get("/api/telemetry", headers=api_token(hub, "staff", "reader"))).json()
        assert telemetry[0]["device"] == meter and telemetry[0]["value"] == 123.456
        # Open to load balancers and Prometheus, and nothing in them names a device, person or reading.
        health, metrics = await http.get("/healthz"), await http.get("/metrics")
        assert health.status_code == metrics.status_code == 200
        for text in (health.text, metrics.text):
            for personal in (meter, "b1-", "wang", "王师傅", "123.456", "127.0.0.1"):
                assert personal not in text, (personal, text[:200])


async def test_kiosks_post_requests_and_read_notices_and_nothing_else_and_volunteers_see_themselves(
        tmp_path: Path, community: Community, mosquitto: MqttEndpoint) -> None:
    async with serving_hub(tmp_path, community, mosquitto) as (url, hub), httpx.AsyncClient(base_url=url) as http:
        assert hub.accounts is not None
        hub.accounts.add_user("root", PASSWORD, "admin")
        hub.accounts.add_user("chen", PASSWORD, "volunteer")
        admin = api_token(hub, "admin")
        made = await http.post("/api/tokens", json={"name": "kiosk-b1", "role": "kiosk"}, headers=admin)
        assert made.status_code == 201
        kiosk = {"Authorization": f"Bearer {made.json()['token']}"}
        request = await http.post("/api/work-orders", headers=kiosk, json={
            "category": "repair", "title": "3单元电梯按钮失灵", "building": "b1"})
        assert request.status_code == 201 and request.json()["source"] == "request"
        oid = request.json()["id"]
        allowed = {p: (await http.get(p, headers=kiosk)).status_code
                   for p in ("/api/notices", "/api/work-order-categories", "/api/me")}
        assert allowed == {p: 200 for p in allowed}
        assert (await http.get("/api/me", headers=kiosk)).json() == {"name": "kiosk-b1", "role": "kiosk", "kind": "token"}
        refused = {p: (await http.get(p, headers=kiosk)).status_code
                   for p in ("/api/devices", "/api/telemetry", "/api/alerts", "/api/work-orders",
                             f"/api/work-orders/{oid}", "/api/stats", "/api/users", "/api/dead-letters")}
        refused["claim"] = (await http.post(f"/api/work-orders/{oid}/claim", json={}, headers=kiosk)).status_code
        refused["desired"] = (await http.put("/api/devices/b1-th-01/desired", headers=kiosk,
                                             json={"thresholds": {"temperature": {"high": 30}}})).status_code
        refused["token"] = (await http.post("/api/tokens", json={"name": "k2", "role": "kiosk"},
                                            headers=kiosk)).status_code
        assert refused == {p: 403 for p in refused}, refused
        # Kiosk is a machine's role: no person gets it.
        assert (await http.post("/api/users", json={"name": "k", "password": PASSWORD, "role": "kiosk"},
                                headers=admin)).status_code == 400
        # A volunteer asks who they are (this was a 403), and still reads no device data.
        login = await http.post("/api/login", json={"name": "chen", "password": PASSWORD})
        cookie = {"Cookie": f"mb_session={login.cookies['mb_session']}"}
        assert (await http.get("/api/me", headers=cookie)).json() == {"name": "chen", "role": "volunteer", "kind": "user"}
        assert (await http.get("/api/devices", headers=cookie)).status_code == 403


async def test_a_token_whose_name_has_a_slash_can_be_revoked(
        tmp_path: Path, community: Community, mosquitto: MqttEndpoint) -> None:
    async with serving_hub(tmp_path, community, mosquitto) as (url, hub), httpx.AsyncClient(base_url=url) as http:
        admin = api_token(hub, "admin")
        made = await http.post("/api/tokens", json={"name": "kiosk/b1/lobby", "role": "kiosk"}, headers=admin)
        kiosk = {"Authorization": f"Bearer {made.json()['token']}"}
        assert (await http.get("/api/me", headers=kiosk)).status_code == 200
        assert (await http.delete("/api/tokens/kiosk/b1/lobby", headers=admin)).json() == {"ok": True}
        assert (await http.get("/api/me", headers=kiosk)).status_code == 401
        assert (await http.delete("/api/tokens/kiosk/b1/lobby", headers=admin)).status_code == 400  # already gone


async def test_failed_logins_back_off_per_account_and_per_address_with_retry_after_and_are_counted(
        tmp_path: Path, community: Community, mosquitto: MqttEndpoint) -> None:
    async with serving_hub(tmp_path, community, mosquitto) as (url, hub), httpx.AsyncClient(base_url=url) as http:
        assert hub.accounts is not None
        hub.accounts.add_user("wang", PASSWORD, "staff")
        statuses = [(await http.post("/api/login", json={"name": "wang", "password": "guess"})).status_code
                    for _ in range(6)]
        assert statuses == [401] * 5 + [429]
        blocked = await http.post("/api/login", json={"name": "wang", "password": PASSWORD})
        assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) >= 1
        assert "登录失败次数过多" in blocked.json()["detail"]
        await asyncio.sleep(int(blocked.headers["retry-after"]) + 0.1)
        assert (await http.post("/api/login", json={"name": "wang", "password": PASSWORD})).status_code == 200
        # One address guessing many names: refused after its own allowance (20 in all).
        names = [(await http.post("/api/login", json={"name": f"guess{i}", "password": "x"})).status_code
                 for i in range(16)]
        assert names == [401] * 15 + [429]
        metrics = (await http.get("/metrics")).text
        assert 'midbrain_hub_logins_total{result="rate_limited"} 3.0' in metrics
        assert 'midbrain_hub_logins_total{result="failed"} 20.0' in metrics


async def test_a_flood_of_parallel_logins_is_refused_fast_while_the_api_answers(
        tmp_path: Path, community: Community, mosquitto: MqttEndpoint) -> None:
    """200 wrong-password logins in flight at once, from a process of their own, for 3 s:
    hashing runs two at a time and the rest are refused (429 or 503 with Retry-After, never a
    500), while a staff token's /api/devices keeps answering."""
    async with serving_hub(tmp_path, community, mosquitto) as (url, hub), \
            httpx.AsyncClient(base_url=url, headers=api_token(hub)) as staff:
        flood = await asyncio.create_subprocess_exec(sys.executable, "-c", _FLOOD, url, "200", "3",
                                                     stdout=asyncio.subprocess.PIPE)
        latencies: list[float] = []
        while flood.returncode is None:
            t = time.perf_counter()
            assert (await staff.get("/api/devices")).status_code == 200
            latencies.append(time.perf_counter() - t)
            try:
                await asyncio.wait_for(flood.wait(), 0.01)
            except TimeoutError:
                pass
        statuses = json.loads((await flood.stdout.read()).decode())  # type: ignore[union-attr]
        assert set(statuses) <= {"401", "429", "503"} and statuses.get("503", 0) + statuses.get("429", 0) > 100, statuses
        assert len(latencies) > 20 and statistics.median(latencies) < 0.1, latencies
        metrics = (await staff.get("/metrics")).text
        assert 'midbrain_hub_logins_total{result="busy"}' in metrics


_FLOOD = """
import asyncio, collections, json, sys, time
import httpx
url, parallel, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
async def main():
    statuses = collections.Counter()
    end = time.monotonic() + seconds
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=httpx.Limits(max_connections=parallel)) as http:
        async def one(i):
            while time.monotonic() < end:
                r = await http.post("/api/login", json={"name": f"user{i % 7}", "password": "wrong"})
                statuses[str(r.status_code)] += 1
                if "retry-after" not in r.headers and r.status_code != 401:
                    statuses["no-retry-after"] += 1
        await asyncio.gather(*(one(i) for i in range(parallel)))
    print(json.dumps(statuses))
asyncio.run(main())
"""


@pytest.fixture
async def hub_url(tmp_path: Path, community: Community, mosquitto: MqttEndpoint) -> AsyncIterator[tuple[str, object]]:
    async with serving_hub(tmp_path, community, mosquitto) as (url, hub):
        yield url, hub


async def test_huge_chunked_and_inflating_bodies_are_refused_with_413_before_they_are_read(
        hub_url: tuple[str, object], tmp_path: Path) -> None:
    from tests.city_and_bridge import serving_city

    url, hub = hub_url
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        declared = await http.post("/api/login", content=b"x" * (5 << 20), headers={"content-type": "application/json"})
        assert declared.status_code == 413 and "请求内容过大" in declared.json()["detail"]

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(80):
                yield b"y" * 65536

        streamed = await http.post("/api/work-orders", content=chunks(), headers={"content-type": "application/json"})
        assert streamed.status_code == 413, streamed.text
        bomb = gzip.compress(json.dumps({"category": "repair", "title": "t", "description": " " * (20 << 20)}).encode())
        assert len(bomb) < 64 * 1024
        inflated = await http.post("/api/work-orders", content=bomb, headers={
            "content-type": "application/json", "content-encoding": "gzip", **api_token(hub)})  # type: ignore[arg-type]
        assert inflated.status_code == 413 and "gzip" in inflated.json()["detail"]
        assert (await http.get("/healthz")).status_code == 200
        metrics = (await http.get("/metrics")).text
        for reason in ("content_length", "streamed", "inflated"):
            assert f'midbrain_http_bodies_refused_total{{reason="{reason}"}} 1.0' in metrics, reason
    async with serving_city(tmp_path / "city", {C: b"k"}) as (city, _), \
            httpx.AsyncClient(base_url=city.url, timeout=30) as http:
        huge = await http.post("/api/v1/batches", content=b"z" * (9 << 20))
        assert huge.status_code == 413 and "at most 8388608 bytes" in huge.json()["detail"]
        assert (await http.post("/api/v1/downlink", content=b"{" * (5 << 20))).status_code == 413


async def test_a_work_order_id_past_sqlite_and_a_nan_desired_state_are_422_not_500(
        hub_url: tuple[str, object]) -> None:
    url, hub = hub_url
    async with httpx.AsyncClient(base_url=url, headers=api_token(hub, "supervisor")) as http:  # type: ignore[arg-type]
        assert (await http.get("/api/work-orders/99999999999999999999")).status_code == 422
        assert (await http.post("/api/work-orders/99999999999999999999/claim", json={})).status_code == 422
        for bad in ('{"interval_s": NaN}', '{"interval_s": Infinity}',
                    '{"thresholds": {"temperature": {"high": NaN}}}', '{"thresholds": {"temperature": {"low": -Infinity}}}'):
            r = await http.put("/api/devices/b1-th-01/desired", content=bad, headers={"content-type": "application/json"})
            assert r.status_code == 422 and r.json()["detail"], (bad, r.text)
