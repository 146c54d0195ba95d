"""SLA timers: an order past its category's SLA is escalated once, counted, and shown first."""

import time
from pathlib import Path

import pytest

from hub.metrics import HubMetrics
from hub.workorders import CATEGORIES, SlaTimer, WorkOrders

pytestmark = pytest.mark.integration


async def test_an_overdue_order_is_escalated_once(tmp_path: Path) -> None:
    orders, metrics = WorkOrders(tmp_path / "hub.sqlite3"), HubMetrics()
    now = time.time()
    late = orders.create(source="request", category="fire_safety", title="烟感", actor="token:kiosk",
                         now=now - CATEGORIES["fire_safety"].sla_minutes * 60 - 1)
    fresh = orders.create(source="request", category="fire_safety", title="烟感", actor="token:kiosk", now=now)
    sla = SlaTimer(orders, metrics, check_interval_s=0.01)
    assert [o["id"] for o in await sla.check()] == [late]
    assert await sla.check() == []  # once each
    assert metrics.totals["work_orders_escalated"] == 1
    assert [o["id"] for o in orders.find()][0] == late  # escalated first on the board
    assert orders.get(late)["escalated_at"] is not None and orders.get(fresh)["escalated_at"] is None
    orders.close()
