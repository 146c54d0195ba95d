"""SLA timers: escalate work orders still unresolved past their category's SLA, once each."""

import asyncio
import logging
from typing import Any

from hub.metrics import HubMetrics
from hub.workorders.store import WorkOrders
from servicekit.lifecycle import wait_or_stop

log = logging.getLogger(__name__)


class SlaTimer:
    def __init__(self, orders: WorkOrders, metrics: HubMetrics, *, check_interval_s: float) -> None:
        self.orders = orders
        self.metrics = metrics
        self.check_interval_s = check_interval_s

    async def run(self, stop: asyncio.Event) -> None:
        while not await wait_or_stop(stop, self.check_interval_s):
            await self.check()

    async def check(self, now: float | None = None) -> list[dict[str, Any]]:
        """Escalate what is overdue now; return the orders escalated."""
        escalated = await asyncio.to_thread(self.orders.escalate_overdue, now)
        for order in escalated:
            self.metrics.count("work_orders_escalated")
            log.warning("work order %d (%s, %s) is past its SLA and unresolved: escalated", order["id"],
                        order["category"], order["title"])
        return escalated
