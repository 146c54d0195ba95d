"""Device twin, roles and the status history through the real paths: a hub on Mosquitto
and a real HTTP socket, an edge agent polling DL/T 645 meters on a pseudo-terminal."""

import asyncio
import time
from pathlib import Path

import aiomqtt
import httpx
import pytest

from contract import topics
from contract.codec import decode_as, encode
from contract.endpoints import MqttEndpoint
from contract.messages import Alert, Birth, Death, Telemetry
from contract.topology import Community
from edge.agent import EdgeAgent
from edge.profiles import load_bus_files
from edge.settings import EdgeSettings
from simulators.pty_bus import dlt645_bus, modbus_bus
from tests.conftest import wait_until
from tests.edge.test_serial_buses import _profiles
from tests.hub.conftest import api_token, serving_hub

pytestmark = pytest.mark.real
C = "xihu-demo"
PASSWORD = "correct horse battery"


async def _login(http: httpx.AsyncClient, name: str) -> None:
    r = await http.post("/api/login", json={"name": name, "password": PASSWORD})
    assert r.status_code == 200, r.text


async def test_desired_state_reaches_the_edge_is_acknowledged_and_is_reconciled_at_the_next_birth(
        tmp_path: Path, community: Community, mosquitto: MqttEndpoint) -> None:
    with dlt645_bus(2, baudrate=115200) as meters, modbus_bus(1, baudrate=115200) as plant:
        buses = [b for _, b in load_bus_files(tuple(str(p) for p in _profiles(tmp_path, meters.port, plant.port)))]

        def agent() -> EdgeAgent:
            a = EdgeAgent(community, "gw-b1", mosquitto, EdgeSettings(state_dir=tmp_path / "edge", birth_wait_s=0.2),
                          buses=buses)
            a.devices.clear()
            return a

        async with serving_hub(tmp_path, community, mosquitto) as (url, hub), \
                httpx.AsyncClient(base_url=url) as boss, httpx.AsyncClient(base_url=url) as worker, \
                httpx.AsyncClient(base_url=url) as anyone, httpx.AsyncClient(base_url=url) as viewer:
            assert hub.accounts is not None
            hub.accounts.add_user("zhang", PASSWORD, "supervisor", "张主管")
            hub.accounts.add_user("wang", PASSWORD, "staff", "王师傅")
            first, stop = agent(), asyncio.Event()
            run = asyncio.create_task(first.run(stop))
            await wait_until(lambda: hub.registry.online(hub.registry.devices["b1-em-02"])
                             if "b1-em-02" in hub.registry.devices else False, timeout=15)

            change = {"interval_s": 0.2, "disabled_points": ["voltage_v"], "thresholds": {"energy_kwh": {"high": 1e6}}}
            assert (await anyone.put("/api/devices/b1-em-02/desired", json=change)).status_code == 401
            assert (await anyone.get("/api/devices/b1-em-02/twin")).status_code == 401  # reads need a login too
            viewer.headers.update(api_token(hub))
            await _login(worker, "wang")
            denied = await worker.put("/api/devices/b1-em-02/desired", json=change)
            assert denied.status_code == 403 and "supervisor" in denied.json()["detail"]
            await _login(boss, "zhang")
            bad = await boss.put("/api/devices/b1-em-02/desired", json={"disabled_points": ["colour"]})
            assert bad.status_code == 422 and "no metric 'colour'" in bad.json()["detail"]
            assert (await boss.put("/api/devices/b1-em-02/desired", json=change)).status_code == 200

            async def twin() -> dict:
                return (await viewer.get("/api/devices/b1-em-02/twin")).json()  # type: ignore[no-any-return]

            async def in_sync() -> dict | None:
                t = await twin()
                return t if t["sync"] == "in_sync" and t["commands"] else None

            view = await wait_until(in_sync, timeout=15)
            assert view["desired"]["version"] == 1 and view["desired"]["set_by"] == "zhang"
            assert sorted((c["command"], c["point"], c["result"]) for c in view["commands"]) == [
                ("disable_point", "voltage_v", "ok"), ("set_interval", None, "ok")]
            assert view["reported"]["online"] is True
            state = first.pollers[0].devices["b1-em-02"]
            assert state.interval_s == 0.2 and state.disabled == {"voltage_v"}

            # A restarted agent has forgotten; its birth brings the desired state back.
            stop.set()
            await asyncio.wait_for(run, 20)
            second, stop = agent(), asyncio.Event()
            run = asyncio.create_task(second.run(stop))

            async def reconciled() -> dict | None:
                t = await twin()
                issuers = {c["issued_by"] for c in t["commands"]}
                return t if "hub:reconcile" in issuers and t["sync"] == "in_sync" else None

            view = await wait_until(reconciled, timeout=15)
            state = second.pollers[0].devices["b1-em-02"]
            assert state.interval_s == 0.2 and state.disabled == {"voltage_v"}
            history = await wait_until(lambda: hub.twin.store.status_history("b1-em-02"), timeout=5)  # type: ignore[union-attr]
            assert history == (await viewer.get("/api/devices/b1-em-02/status-history")).json()
            trail = (await boss.get("/api/audit", params={"target": "device:b1-em-02"})).json()
            assert (await worker.get("/api/audit")).status_code == 403
            stop.set()
            await asyncio.wait_for(run, 20)
    assert [t["actor"] for t in trail if t["action"] == "device.desired"] == ["zhang"]
    assert trail[0]["detail"]["patch"]["disabled_points"] == ["voltage_v"]
    assert history and history[-1]["online"] is True and history[-1]["reason"] == "reporting"


async def test_api_tokens_for_machine_clients_and_revocation(
        tmp_path: Path, community: Community, mosquitto: MqttEndpoint) -> None:
    async with serving_hub(tmp_path, community, mosquitto) as (url, hub), \
            httpx.AsyncClient(base_url=url) as admin, httpx.AsyncClient(base_url=url) as machine:
        assert hub.accounts is not None
        hub.accounts.add_user("root", PASSWORD, "admin")
        await _login(admin, "root")
        made = await admin.post("/api/tokens", json={"name": "city-ops", "role": "supervisor"})
        assert made.status_code == 201
        token = made.json()["token"]
        bearer = {"Authorization": f"Bearer {token}"}
        assert (await machine.get("/api/me", headers=bearer)).json() == {
            "name": "city-ops", "role": "supervisor", "kind": "token"}
        r = await machine.put("/api/devices/b1-th-01/desired", json={"thresholds": {"temperature": {"high": 35}}},
                              headers=bearer)
        assert r.status_code == 200 and r.json()["desired"]["thresholds"] == {"temperature": {"high": 35.0}}
        assert r.json()["sync"] == "in_sync"  # thresholds are the hub's own: nothing to send
        async with aiomqtt.Client(mosquitto.host, mosquitto.port) as edge, \
                aiomqtt.Client(mosquitto.host, mosquitto.port) as control_room:
            await control_room.subscribe(topics.hub_alert(C), qos=1)
            for seq, temperature in enumerate((30.0, 36.5, 37.0), start=1):
                await edge.publish(topics.device_telemetry(C, "gw-b1", "b1-th-01"), encode(Telemetry(
                    seq=seq, boot="b1", ts=time.time(), device="b1-th-01", metrics={"temperature": temperature})),
                    qos=1)
            async with asyncio.timeout(10):
                published = decode_as(Alert, (await anext(aiter(control_room.messages))).payload)  # type: ignore[arg-type]
        assert (published.device, published.kind, published.score) == ("b1-th-01", "threshold", 36.5)

        async def threshold_alerts() -> list[dict]:
            return [a for a in (await machine.get("/api/alerts", headers=bearer)).json() if a["kind"] == "threshold"]

        alerts = await wait_until(threshold_alerts, timeout=10)
        await asyncio.sleep(0.3)
        assert len(await threshold_alerts()) == 1  # one excursion, one alert
        assert (alerts[0]["device"], alerts[0]["metric"], alerts[0]["score"]) == ("b1-th-01", "temperature", 36.5)
        assert (await machine.post("/api/tokens", json={"name": "x", "role": "admin"},
                                   headers=bearer)).status_code == 403  # a supervisor cannot mint tokens
        assert (await admin.delete("/api/tokens/city-ops")).status_code == 200
        assert (await machine.get("/api/me", headers=bearer)).status_code == 401
        assert (await machine.get("/api/me", headers={"Authorization": "Bearer mbt_forged"})).status_code == 401
        assert (await admin.post("/api/login", json={"name": "root", "password": "wrong"})).status_code == 401
        trail = (await admin.get("/api/audit")).json()
    actions = [(t["action"], t["actor"]) for t in trail]
    assert ("token.create", "root") in actions and ("token.revoke", "root") in actions
    assert ("device.desired", "token:city-ops") in actions and ("login.failed", "root") in actions


async def test_each_device_keeps_a_history_of_going_offline_and_back_with_reasons(
        tmp_path: Path, community: Community, mosquitto: MqttEndpoint) -> None:
    gw, dev = "gw-b1", "b1-th-01"
    async with serving_hub(tmp_path, community, mosquitto, offline_after_s=1.0) as (url, hub), \
            aiomqtt.Client(mosquitto.host, mosquitto.port) as edge, \
            httpx.AsyncClient(base_url=url, headers=api_token(hub)) as http:

        async def reading(seq: int) -> None:
            await edge.publish(topics.device_telemetry(C, gw, dev), encode(Telemetry(
                seq=seq, boot="b1", ts=time.time(), device=dev, metrics={"temperature": 20.0})), qos=1)

        async def history(n: int) -> list[dict] | None:
            rows = (await http.get(f"/api/devices/{dev}/status-history")).json()
            return rows if len(rows) >= n else None

        await edge.publish(topics.gateway_state(C, gw), encode(Birth(ts=time.time(), boot="b1", seq=0, software="t")),
                           qos=1, retain=True)
        await reading(1)
        await wait_until(lambda: history(1), timeout=10)
        await asyncio.sleep(2.5)  # no readings: stale
        await reading(2)
        await wait_until(lambda: history(3), timeout=10)
        # A planned stop: the agent announces its own death. Recorded, not alarmed.
        await edge.publish(topics.gateway_state(C, gw), encode(Death(boot="b1", clean=True)), qos=1, retain=True)
        await wait_until(lambda: history(4), timeout=10)
        await edge.publish(topics.gateway_state(C, gw), encode(Birth(ts=time.time(), boot="b2", seq=0, software="t")),
                           qos=1, retain=True)
        await edge.publish(topics.device_telemetry(C, gw, dev), encode(Telemetry(
            seq=1, boot="b2", ts=time.time(), device=dev, metrics={"temperature": 20.0})), qos=1)
        await wait_until(lambda: history(5), timeout=10)
        # The gateway's Last Will: it went away without a word. Someone should look.
        await edge.publish(topics.gateway_state(C, gw), encode(Death(boot="b2", clean=False)), qos=1, retain=True)
        rows = await wait_until(lambda: history(6), timeout=10)
        alerts = [a for a in (await http.get("/api/alerts")).json() if a["kind"] == "offline"]
    assert [(r["online"], r["reason"]) for r in reversed(rows)] == [
        (True, "reporting"), (False, "stale"), (True, "reporting"), (False, "gateway-stopped"),
        (True, "reporting"), (False, "gateway-offline")]
    # One alert per unplanned drop (stale, Last Will); none for the announced stop.
    assert [(a["device"], a["metric"]) for a in alerts] == [(dev, "status"), (dev, "status")]


async def test_a_planned_stop_that_lasts_too_long_is_alarmed_once(
        tmp_path: Path, community: Community, mosquitto: MqttEndpoint) -> None:
    gw, dev = "gw-b1", "b1-th-01"
    async with serving_hub(tmp_path, community, mosquitto, offline_after_s=1.0, planned_stop_grace_s=3.0) as (
            url, hub), aiomqtt.Client(mosquitto.host, mosquitto.port) as edge, \
            httpx.AsyncClient(base_url=url, headers=api_token(hub)) as http:

        async def offline_alerts() -> list[dict]:
            return [a for a in (await http.get("/api/alerts")).json() if a["kind"] == "offline"]

        await edge.publish(topics.gateway_state(C, gw), encode(Birth(ts=time.time(), boot="b1", seq=0, software="t")),
                           qos=1, retain=True)
        await asyncio.sleep(1.2)  # past the hub's start-up quiet period
        await edge.publish(topics.device_telemetry(C, gw, dev), encode(Telemetry(
            seq=1, boot="b1", ts=time.time(), device=dev, metrics={"temperature": 20.0})), qos=1)
        await wait_until(lambda: hub.registry.online(hub.registry.devices[dev]), timeout=10)
        await asyncio.sleep(1.5)  # the status watch sees it reporting
        await edge.publish(topics.gateway_state(C, gw), encode(Death(boot="b1", clean=True)), qos=1, retain=True)
        stopped = time.monotonic()
        await asyncio.sleep(1.5)
        assert await offline_alerts() == []  # within the grace: recorded, not alarmed
        await wait_until(offline_alerts, timeout=10)
        assert time.monotonic() - stopped >= 3.0
        await asyncio.sleep(2.0)
        assert [(a["device"], a["metric"]) for a in await offline_alerts()] == [(dev, "status")]  # once
