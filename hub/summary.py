"""Build the per-interval community summary the hub publishes for the bridge.

Cells are (building, device class): the summary carries no device identifier.
"""

from collections import Counter
from dataclasses import dataclass, field

from contract.messages import HubSummary, MetricStats, SummaryCell
from hub.registry import Registry


@dataclass
class _Cell:
    devices: int = 0
    online: int = 0
    readings: int = 0
    # metric -> [count, sum, min, max]
    metrics: dict[str, list[float]] = field(default_factory=dict)


def build_summary(registry: Registry, window_start: float, window_end: float,
                  stats: dict[tuple[str, str], list[float]], readings: dict[str, int],
                  alerts: Counter[str], events: dict[str, int], dead_letters: int) -> HubSummary:
    cells: dict[tuple[str, str], _Cell] = {}
    for device in registry.devices.values():
        cell = cells.setdefault((device.building, device.device_class.value), _Cell())
        cell.devices += 1
        cell.online += registry.online(device, window_end)
        cell.readings += readings.get(device.id, 0)
    for (device_id, metric), (n, total, lo, hi) in stats.items():
        device = registry.devices[device_id]
        acc = cells[(device.building, device.device_class.value)].metrics.setdefault(metric, [0, 0.0, lo, hi])
        acc[0] += n
        acc[1] += total
        acc[2] = min(acc[2], lo)
        acc[3] = max(acc[3], hi)
    out = tuple(
        SummaryCell(
            building=building, device_class=device_class, devices=cell.devices, online=cell.online,
            readings=cell.readings,
            metrics={m: MetricStats(count=int(n), mean=total / n, min=lo, max=hi)
                     for m, (n, total, lo, hi) in cell.metrics.items() if n},
        )
        for (building, device_class), cell in sorted(cells.items())
    )
    return HubSummary(community=registry.community.id, window_start=window_start, window_end=window_end,
                      cells=out, alerts=dict(alerts), events=dict(events), dead_letters=dead_letters)
