"""Turn a hub summary into what may leave the community.

Only fields of :mod:`contract.city` can be sent (its models forbid extras); this module
decides which of the hub's numbers go into them. Device identifiers never appear in a
hub summary; here the metric means are further limited to an explicit allow-list.
"""

from contract.city import CellSummary, CommunitySummary
from contract.messages import HubSummary

# Metric means the city may see, per the city data agreement (environment and utilities).
ALLOWED_MEANS = frozenset({"temperature", "humidity", "pm2_5", "pm10", "flow_lpm", "fill_pct"})


def summary_key(community: str, window_start: float) -> str:
    """Stable idempotency key: the same hub window always yields the same key."""
    return f"{community}:{int(round(window_start * 1000))}"


def to_city(summary: HubSummary) -> CommunitySummary:
    cells = tuple(
        CellSummary(
            building=c.building, device_class=c.device_class, devices=c.devices, online=c.online,
            readings=c.readings,
            means={m: round(s.mean, 3) for m, s in c.metrics.items() if m in ALLOWED_MEANS},
        )
        for c in summary.cells
    )
    return CommunitySummary(
        key=summary_key(summary.community, summary.window_start),
        community=summary.community,
        window_start=summary.window_start,
        window_end=summary.window_end,
        devices=sum(c.devices for c in cells),
        online=sum(c.online for c in cells),
        readings=sum(c.readings for c in cells),
        cells=cells,
        alerts=dict(summary.alerts),
        events=dict(summary.events),
    )
