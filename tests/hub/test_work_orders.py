"""Work orders: the lifecycle and who may do what (on a real SQLite file), and an alert
becoming a work order that staff claim and resolve through the hub's real HTTP API."""

import time
from pathlib import Path

import aiomqtt
import httpx
import pytest

from contract import topics
from contract.codec import encode
from contract.endpoints import MqttEndpoint
from contract.messages import Telemetry
from contract.topology import Community
from hub.accounts import Principal
from hub.workorders import CATEGORIES, WorkOrderError, WorkOrders
from tests.conftest import wait_until
from tests.hub.conftest import serving_hub

WANG = Principal("wang", "staff")
LI = Principal("li", "staff")
ZHANG = Principal("zhang", "supervisor")
AUNTIE = Principal("chen-ayi", "volunteer")
PASSWORD = "correct horse battery"


@pytest.fixture
def orders(tmp_path: Path) -> WorkOrders:
    return WorkOrders(tmp_path / "hub.sqlite3")


@pytest.mark.integration
def test_the_lifecycle_with_its_audit_trail(orders: WorkOrders) -> None:
    o = orders.create(source="request", category="repair", title="3单元楼道灯不亮", actor="kiosk-1")
    orders.act(o, "claim", WANG)
    with pytest.raises(WorkOrderError, match="only the assignee"):
        orders.act(o, "start", LI)
    orders.act(o, "start", WANG)
    with pytest.raises(WorkOrderError, match="needs a note"):
        orders.act(o, "resolve", WANG)
    orders.act(o, "resolve", WANG, note="换了灯泡")
    with pytest.raises(WorkOrderError, match="supervisor"):
        orders.act(o, "verify", WANG)
    orders.act(o, "reopen", ZHANG, note="还是不亮")
    orders.act(o, "assign", ZHANG, assignee="li")
    orders.act(o, "resolve", LI, note="换了开关")
    done = orders.act(o, "verify", ZHANG)
    assert done["status"] == "verified" and done["assignee"] == "li"
    assert [(e["actor"], e["action"], e["from"], e["to"]) for e in done["events"]] == [
        ("kiosk-1", "create", None, "open"), ("wang", "claim", "open", "claimed"),
        ("wang", "start", "claimed", "in_progress"), ("wang", "resolve", "in_progress", "resolved"),
        ("zhang", "reopen", "resolved", "reopened"), ("zhang", "assign", "reopened", "claimed"),
        ("li", "resolve", "claimed", "resolved"), ("zhang", "verify", "resolved", "verified")]
    with pytest.raises(WorkOrderError, match="cannot claim a work order that is verified"):
        orders.act(o, "claim", WANG)


@pytest.mark.integration
def test_volunteers_claim_only_what_is_open_to_volunteers(orders: WorkOrders) -> None:
    fire = orders.create(source="alert", category="fire_safety", title="烟感报警", actor="hub:rules")
    litter = orders.create(source="request", category="sanitation", title="2号楼门口垃圾满了", actor="kiosk-1")
    assert CATEGORIES["sanitation"].volunteers and not CATEGORIES["fire_safety"].volunteers
    with pytest.raises(WorkOrderError, match="volunteers may not claim fire_safety"):
        orders.act(fire, "claim", AUNTIE)
    assert orders.act(litter, "claim", AUNTIE)["assignee"] == "chen-ayi"
    assert [o["id"] for o in orders.find(volunteer_only=True)] == [litter]


@pytest.mark.integration
def test_an_order_past_its_sla_is_escalated_once_and_listed_first(orders: WorkOrders) -> None:
    t0 = 1_800_000_000.0
    slow = orders.create(source="request", category="repair", title="a", actor="k", now=t0)  # SLA 24 h
    fire = orders.create(source="alert", category="fire_safety", title="b", actor="k", now=t0 + 60)  # SLA 15 min
    assert orders.escalate_overdue(now=t0 + 10 * 60) == []
    assert [o["id"] for o in orders.escalate_overdue(now=t0 + 17 * 60)] == [fire]  # due at t0 + 16 min
    assert orders.escalate_overdue(now=t0 + 18 * 60) == []  # once
    assert [o["id"] for o in orders.find()][0] == fire
    assert orders.get(fire)["events"][-1]["action"] == "escalate" and orders.get(slow)["escalated_at"] is None


@pytest.mark.integration
def test_a_repeated_alert_is_noted_on_its_open_order(orders: WorkOrders) -> None:
    args = {"alert_key": "d:m:k", "category": "sensor", "title": "t", "building": "b1", "device": "d",
            "severity": "warning"}
    first, created = orders.from_alert(detail="x=1", **args)
    again, created_again = orders.from_alert(detail="x=2", **args)
    assert created and not created_again and again == first
    assert orders.get(first)["events"][-1]["action"] == "alert_repeated"
    orders.act(first, "claim", WANG)
    orders.act(first, "resolve", WANG, note="fixed")
    third, created_third = orders.from_alert(detail="x=3", **args)  # resolved: a new incident
    assert created_third and third != first


@pytest.mark.real
async def test_an_alert_becomes_a_work_order_that_staff_claim_and_resolve_over_http(
        tmp_path: Path, community: Community, mosquitto: MqttEndpoint) -> None:
    async with serving_hub(tmp_path, community, mosquitto) as (url, hub), \
            httpx.AsyncClient(base_url=url) as boss, httpx.AsyncClient(base_url=url) as worker, \
            aiomqtt.Client(mosquitto.host, mosquitto.port) as edge:
        assert hub.accounts is not None
        hub.accounts.add_user("zhang", PASSWORD, "supervisor")
        hub.accounts.add_user("wang", PASSWORD, "staff")
        for client, name in ((boss, "zhang"), (worker, "wang")):
            assert (await client.post("/api/login", json={"name": name, "password": PASSWORD})).status_code == 200
        r = await boss.put("/api/devices/b1-th-01/desired", json={"thresholds": {"temperature": {"high": 35}}})
        assert r.status_code == 200
        for seq, t in enumerate((30.0, 38.0), start=1):
            await edge.publish(topics.device_telemetry("xihu-demo", "gw-b1", "b1-th-01"), encode(Telemetry(
                seq=seq, boot="b", ts=time.time(), device="b1-th-01", metrics={"temperature": t})), qos=1)

        async def opened() -> list[dict]:
            return (await worker.get("/api/work-orders", params={"status": "open"})).json()  # type: ignore[no-any-return]

        [order] = await wait_until(opened, timeout=10)
        assert order["category"] == "environment" and order["device"] == "b1-th-01" and "温度" in order["title"]
        oid = order["id"]
        assert (await worker.post(f"/api/work-orders/{oid}/verify", json={})).status_code == 403
        assert (await worker.post(f"/api/work-orders/{oid}/claim", json={})).json()["status"] == "claimed"
        assert (await worker.post(f"/api/work-orders/{oid}/start", json={})).json()["status"] == "in_progress"
        bad = await worker.post(f"/api/work-orders/{oid}/resolve", json={})
        assert bad.status_code == 422 and "note" in bad.json()["detail"]
        done = await worker.post(f"/api/work-orders/{oid}/resolve", json={"note": "关了锅炉房的门"})
        assert done.json()["status"] == "resolved"
        assert (await boss.post(f"/api/work-orders/{oid}/assign", json={"assignee": "nobody"})).status_code == 422
        assert (await boss.post(f"/api/work-orders/{oid}/verify", json={})).json()["status"] == "verified"
        request = await worker.post("/api/work-orders", json={"category": "repair", "title": "电梯按钮失灵"})
        assert request.status_code == 201 and request.json()["source"] == "request"
        hub.accounts.add_user("chen", PASSWORD, "volunteer")
        async with httpx.AsyncClient(base_url=url) as volunteer:
            await volunteer.post("/api/login", json={"name": "chen", "password": PASSWORD})
            assert (await volunteer.get(f"/api/work-orders/{request.json()['id']}")).status_code == 403
            seen = [o["category"] for o in (await volunteer.get("/api/work-orders")).json()]
            assert seen == ["environment"]  # open to volunteers; the repair request is not
        async with httpx.AsyncClient(base_url=url) as stranger:
            anonymous = await stranger.get("/api/work-orders")
        trail = (await boss.get("/api/audit", params={"target": f"work_order:{oid}"})).json()
    assert anonymous.status_code == 401
    assert [t["action"] for t in reversed(trail)] == [
        "work_order.claim", "work_order.start", "work_order.resolve", "work_order.verify"]
