"""Work orders from alerts: one order per incident (device, metric, kind); a repeat while
that order is still active is noted on it."""

import asyncio
import logging

from contract.classes import CATALOG
from hub.alerts import KIND_ZH, RaisedAlert
from hub.metrics import HubMetrics
from hub.registry import Registry
from hub.categories import category_of_alert
from hub.workorders.store import WorkOrders

log = logging.getLogger(__name__)


class AlertIntake:
    def __init__(self, orders: WorkOrders, registry: Registry, metrics: HubMetrics) -> None:
        self.orders = orders
        self.registry = registry
        self.metrics = metrics

    async def on_alert(self, alert: RaisedAlert) -> int | None:
        """Open (or note on) the order for ``alert``; its id, None for a device the hub does not know."""
        state = self.registry.devices.get(alert.device)
        if state is None:
            return None
        label = "" if alert.kind == "offline" else _label_zh(state.device_class, alert.metric)
        what, category = KIND_ZH.get(alert.kind, alert.kind), category_of_alert(alert.kind, state.device_class)
        if alert.rule is not None:
            label, what, category = "", alert.rule.label_zh, alert.rule.category or category
        order, created = await asyncio.to_thread(
            self.orders.from_alert, alert_key=f"{alert.device}:{alert.metric}:{alert.kind}", category=category,
            title=f"{state.name or alert.device}：{label}{what}", building=state.building, device=alert.device,
            severity=alert.severity, detail=f"{alert.metric}={alert.score:g} ({alert.kind})", now=alert.at)
        if created:
            self.metrics.count("work_orders_opened")
            log.info("work order %d opened for alert %s/%s/%s", order, alert.device, alert.metric, alert.kind)
        return order


def _label_zh(device_class: str, metric: str) -> str:
    """A metric's Chinese label; a combined one ("temperature+humidity", a learned normal's
    or a pattern detector's) joins its parts' labels: 温度+湿度."""
    described = [CATALOG[device_class].metric(part) for part in metric.split("+")]
    return "+".join(d.label_zh if d is not None else part for d, part in zip(described, metric.split("+"), strict=True))
