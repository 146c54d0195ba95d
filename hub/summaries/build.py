"""Build the per-interval community summary the hub publishes for the bridge.

Cells are (building, device class): the summary carries no device identifier.
"""

from collections import Counter
from dataclasses import dataclass, field

from contract.classes import DeviceClass
from contract.messages import HubHealth, HubSummary, MetricStats, SummaryCell, UtilityUse, WorkOrderStats
from hub.registry import Registry

# Cumulative registers whose growth in a window is what was consumed in it.
_REGISTERS = {(DeviceClass.ELECTRICITY_METER, "energy_kwh"): "electricity", (DeviceClass.WATER_METER, "total_m3"): "water"}


@dataclass
class _Cell:
    devices: int = 0
    online: int = 0
    readings: int = 0
    # metric -> [count, sum, min, max]
    metrics: dict[str, list[float]] = field(default_factory=dict)


def utility_use(registry: Registry, stats: dict[tuple[str, str], list[float]]) -> UtilityUse:
    """Per meter, the register's growth over the window (max minus min of what it reported)."""
    use = {"electricity": 0.0, "water": 0.0}
    meters = {"electricity": 0, "water": 0}
    for (device_id, metric), (_, _, lo, hi) in stats.items():
        kind = _REGISTERS.get((registry.devices[device_id].device_class, metric))
        if kind is not None:
            use[kind] += max(0.0, hi - lo)
            meters[kind] += 1
    return UtilityUse(electricity_kwh=round(use["electricity"], 4), electricity_meters=meters["electricity"],
                      water_m3=round(use["water"], 4), water_meters=meters["water"])


def build_summary(registry: Registry, window_start: float, window_end: float,
                  stats: dict[tuple[str, str], list[float]], readings: dict[str, int],
                  alerts: Counter[str], events: dict[str, int], dead_letters: int, *,
                  alerts_by_severity: Counter[str] | None = None, requests: dict[str, int] | None = None,
                  work_orders: WorkOrderStats | None = None, household_alerts: Counter[str] | None = None,
                  household_alerts_by_severity: Counter[str] | None = None,
                  quality: dict[str, int] | None = None) -> HubSummary:
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
    health = HubHealth(readings_stored=sum(readings.values()), dead_letters=dead_letters,
                       alerts_raised=sum(alerts.values()), devices=sum(c.devices for c in out),
                       devices_online=sum(c.online for c in out),
                       points_by_quality={k: v for k, v in sorted((quality or {}).items()) if v})
    return HubSummary(community=registry.community.id, window_start=window_start, window_end=window_end,
                      cells=out, alerts=dict(alerts), events=dict(events), dead_letters=dead_letters,
                      alerts_by_severity=dict(alerts_by_severity or {}), requests=dict(requests or {}),
                      household_alerts=dict(household_alerts or {}),
                      household_alerts_by_severity=dict(household_alerts_by_severity or {}),
                      offline_devices=tuple(sorted(d.id for d in registry.devices.values()
                                                   if not registry.online(d, window_end)))[:10_000],
                      work_orders=work_orders, utilities=utility_use(registry, stats), hub=health)


def _merge_metric(a: MetricStats, b: MetricStats) -> MetricStats:
    n = a.count + b.count
    return MetricStats(count=n, mean=(a.mean * a.count + b.mean * b.count) / n if n else 0.0,
                       min=min(a.min, b.min), max=max(a.max, b.max))


def revise(kept: HubSummary | None, late: HubSummary) -> HubSummary:
    """Fold a window's late readings (``late``, built from them alone) into the summary kept
    for that window, as its next revision. Without a kept summary (the hub never summarised
    that window, e.g. it was down) the late data is the window's first summary.

    Device and online counts stay those of the kept summary (they describe the window as it
    was). Utility use adds each late meter's register growth: exact when a meter's readings
    for the window all came late (an edge's replay after an outage); a meter that reported
    both in time and late is counted in both parts."""
    if kept is None:
        return late
    cells = {(c.building, c.device_class): c for c in kept.cells}
    for c in late.cells:
        old = cells.get((c.building, c.device_class))
        if old is None:
            cells[(c.building, c.device_class)] = c
            continue
        metrics = dict(old.metrics)
        for name, stats in c.metrics.items():
            metrics[name] = _merge_metric(metrics[name], stats) if name in metrics else stats
        cells[(c.building, c.device_class)] = old.model_copy(update={"readings": old.readings + c.readings,
                                                                       "metrics": metrics})
    utilities = kept.utilities
    if late.utilities is not None:
        u, v = kept.utilities or UtilityUse(), late.utilities
        utilities = UtilityUse(electricity_kwh=round(u.electricity_kwh + v.electricity_kwh, 4),
                               electricity_meters=u.electricity_meters + v.electricity_meters,
                               water_m3=round(u.water_m3 + v.water_m3, 4), water_meters=u.water_meters + v.water_meters)
    late_readings = sum(c.readings for c in late.cells)
    hub = kept.hub
    if hub is not None:
        by_quality = Counter(hub.points_by_quality)
        if late.hub is not None:
            by_quality.update(late.hub.points_by_quality)
        hub = hub.model_copy(update={"readings_stored": hub.readings_stored + late_readings,
                                     "points_by_quality": dict(sorted(by_quality.items()))})
    return kept.model_copy(update={"revision": kept.revision + 1, "cells": tuple(v for _, v in sorted(cells.items())),
                                   "utilities": utilities, "hub": hub})


def late_summary(registry: Registry, window_start: float, window_end: float,
                 stats: dict[tuple[str, str], list[float]], readings: dict[str, int],
                 quality: dict[str, int] | None = None) -> HubSummary:
    """A window's late readings alone, summarised. A device counts as online in that window
    if it reported in it (its live status then is not known any more)."""
    summary = build_summary(registry, window_start, window_end, stats, readings, Counter(), {}, 0, quality=quality)
    reported = Counter((d.building, d.device_class.value) for d in registry.devices.values() if readings.get(d.id))
    cells = tuple(c.model_copy(update={"online": reported[(c.building, c.device_class.value)]})
                  for c in summary.cells if reported[(c.building, c.device_class.value)])
    hub = summary.hub
    if hub is not None:
        hub = hub.model_copy(update={"devices": sum(c.devices for c in cells),
                                     "devices_online": sum(c.online for c in cells)})
    return summary.model_copy(update={"cells": cells, "hub": hub})


def roll_up(parts: list[HubSummary], window_start: float, window_end: float, period_s: int,
            work_orders: WorkOrderStats | None, revision: int = 0) -> HubSummary:
    """A coarser window (``period_s``, e.g. an hour) from the base summaries that make it up,
    oldest first. Counts add up; metric statistics merge exactly (count-weighted means);
    what describes a moment (devices, online, offline devices, the hub's device counts)
    is the last part's, the state at the window's end. ``work_orders`` is the hub's own
    count over the whole window (medians do not add up); metered use adds up, and the
    meters counted are the most that reported in any part."""
    if not parts:
        raise ValueError("a roll-up needs at least one summary")
    last = parts[-1]
    cells: dict[tuple[str, str], SummaryCell] = {}
    readings: Counter[tuple[str, str]] = Counter()
    metrics: dict[tuple[str, str], dict[str, MetricStats]] = {}
    for part in parts:
        for c in part.cells:
            at = (c.building, c.device_class)
            readings[at] += c.readings
            merged = metrics.setdefault(at, {})
            for name, stats in c.metrics.items():
                merged[name] = _merge_metric(merged[name], stats) if name in merged else stats
    for c in last.cells:
        cells[(c.building, c.device_class)] = c
    for part in parts:  # a cell the last part lacks (a building emptied since): its last state
        for c in part.cells:
            cells.setdefault((c.building, c.device_class), c)
    out = tuple(cells[at].model_copy(update={"readings": readings[at], "metrics": metrics.get(at, {})})
                for at in sorted(cells))

    def total(field: str) -> dict[str, int]:
        acc: Counter[str] = Counter()
        for part in parts:
            acc.update(getattr(part, field))
        return dict(acc)

    uses = [p.utilities for p in parts if p.utilities is not None]
    utilities = UtilityUse(electricity_kwh=round(sum(u.electricity_kwh for u in uses), 4),
                           electricity_meters=max((u.electricity_meters for u in uses), default=0),
                           water_m3=round(sum(u.water_m3 for u in uses), 4),
                           water_meters=max((u.water_meters for u in uses), default=0)) if uses else None
    healths = [p.hub for p in parts if p.hub is not None]
    hub = HubHealth(readings_stored=sum(h.readings_stored for h in healths),
                    dead_letters=sum(h.dead_letters for h in healths),
                    alerts_raised=sum(h.alerts_raised for h in healths),
                    devices=healths[-1].devices, devices_online=healths[-1].devices_online,
                    points_by_quality=dict(sorted(sum((Counter(h.points_by_quality) for h in healths),
                                                      Counter()).items()))) if healths else None
    return HubSummary(community=last.community, window_start=window_start, window_end=window_end,
                      period_s=period_s, revision=revision, cells=out, alerts=total("alerts"),
                      events=total("events"), dead_letters=sum(p.dead_letters for p in parts),
                      alerts_by_severity=total("alerts_by_severity"), requests=total("requests"),
                      household_alerts=total("household_alerts"),
                      household_alerts_by_severity=total("household_alerts_by_severity"),
                      offline_devices=last.offline_devices, work_orders=work_orders, utilities=utilities, hub=hub)
