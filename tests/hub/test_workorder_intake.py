"""Work orders from alerts, through the alerting component's listener: one per incident."""

from pathlib import Path

import pytest

from contract.topology import Community
from hub.alerts import RaisedAlert
from hub.metrics import HubMetrics
from hub.registry import Registry
from hub.workorders import AlertIntake, WorkOrders
from tests.hub.components import alerting

pytestmark = pytest.mark.integration


async def test_alerts_become_one_work_order_per_incident(tmp_path: Path, community: Community) -> None:
    registry, metrics = Registry(community, offline_after_s=30), HubMetrics()
    orders = WorkOrders(tmp_path / "hub.sqlite3")
    a = alerting(tmp_path, community, registry, metrics)
    a.listen(AlertIntake(orders, registry, metrics).on_alert)

    await a.raise_alert(100.0, "b1-wm-01", "flow_lpm", "water_leak", 0.9, "warning")
    await a.raise_alert(200.0, "b1-wm-01", "flow_lpm", "water_leak", 0.8, "warning")  # the same incident
    [order] = orders.find()
    assert order["category"] == "water_leak" and order["source"] == "alert" and order["building"] == "b1"
    assert order["title"] == "1号楼总水表：瞬时流量夜间持续用水（疑似漏水）"
    assert [e["action"] for e in orders.get(order["id"])["events"]] == ["create", "alert_repeated"]
    assert metrics.totals["work_orders_opened"] == 1
    orders.close()


async def test_a_combined_alert_opens_an_order_in_its_rules_category(tmp_path: Path, community: Community) -> None:
    registry, metrics = Registry(community, offline_after_s=30), HubMetrics()
    orders = WorkOrders(tmp_path / "hub.sqlite3")
    a = alerting(tmp_path, community, registry, metrics)
    a.listen(AlertIntake(orders, registry, metrics).on_alert)
    await a.raise_alert(100.0, "b1-smoke-01", "smoke", "fire", 1.0, "critical")
    await a.raise_alert(110.0, "b1-th-01", "temperature", "threshold", 61.0, "warning")
    combined = [o for o in orders.find() if o["alert_key"] == "b1-th-01:fire_confirmed:combined"]
    assert [(o["category"], o["severity"], o["title"]) for o in combined] == [
        ("fire_safety", "critical", "1号楼大堂温湿度：烟感报警且温度骤升（疑似火情）")]
    orders.close()


async def test_an_unknown_device_opens_no_order(tmp_path: Path, community: Community) -> None:
    registry, metrics = Registry(community, offline_after_s=30), HubMetrics()
    orders = WorkOrders(tmp_path / "hub.sqlite3")
    intake = AlertIntake(orders, registry, metrics)
    a = alerting(tmp_path, community, registry, metrics)
    a.listen(intake.on_alert)
    await a.raise_alert(1.0, "b9-ghost", "temperature", "spike", 0.9, "warning")
    assert orders.find() == []
    assert await intake.on_alert(RaisedAlert(1, 1.0, "b9-ghost", "temperature", "spike", 0.9, "warning", "m")) is None
    orders.close()
