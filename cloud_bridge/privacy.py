"""Turn a hub summary into what may leave the community.

Only fields of :mod:`contract.city` can be sent (its models forbid extras:
``contract.city.egress_allow_list()`` lists them); this module decides which of the
hub's numbers go into them:

- **Metric means** only from an explicit allow-list (environment and utilities).
- **Small cells.** A count that concerns fewer than ``k`` households or residents is not
  sent as it is. A household-level cell (a building's water or electricity meters, one
  per flat) with fewer than ``k`` devices is merged into the community-wide cell of its
  class (building ``all``); if that is still under ``k``, it is suppressed. Residents'
  event counts (requests at kiosks, by type) under ``k`` are merged into ``other``, and
  suppressed if ``other`` is still under ``k``. Alerts raised on household devices (a
  flat's leak, its meter offline) are taken out of the counts by type and sent as one
  count, ``household``, when there are ``k`` or more in the window; fewer are suppressed
  everywhere they would show (by type, by severity, the hub's total). The summary lists
  every merge and suppression, so the city knows what it is not seeing and why.
- Resident identifiers never appear in a hub summary. Device identifiers leave only as
  salted per-community hashes (``contract.city.device_ref``) of shared devices offline at
  a window's end, where the city needs continuity; household devices never.
"""

from collections import defaultdict

from contract.city import MERGED_BUILDING, CellSummary, CommunitySummary, Suppression, device_ref
from contract.classes import HOUSEHOLD_CLASSES, DeviceClass
from contract.messages import HubHealth, HubSummary, SummaryCell, UtilityUse

# Metric means the city may see, per the city data agreement (environment and utilities).
ALLOWED_MEANS = frozenset({"temperature", "humidity", "pm2_5", "pm10", "flow_lpm", "fill_pct", "power_kw"})
# HOUSEHOLD_CLASSES (contract.classes): one device per household, so their counts, means
# and alerts describe households.
HOUSEHOLD_ALERTS = "household"  # the one alert count household devices' alerts leave as
# Events that residents cause (a request at a kiosk): their counts describe residents.
RESIDENT_EVENTS = frozenset({"service_request", "vote", "feedback"})
OTHER_EVENTS = "other"
K_DEFAULT = 5


def summary_key(community: str, window_start: float, period_s: int = 0) -> str:
    """Stable idempotency key: the same hub window always yields the same key; a roll-up
    window (``period_s``) has its own, apart from the interval window starting with it."""
    key = f"{community}:{int(round(window_start * 1000))}"
    return f"{key}:p{period_s}" if period_s else key


def _means(cells: list[SummaryCell]) -> dict[str, float]:
    """Allow-listed means of one or more cells, weighted by their reading counts."""
    totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for c in cells:
        for m, s in c.metrics.items():
            if m in ALLOWED_MEANS:
                totals[m][0] += s.mean * s.count
                totals[m][1] += s.count
    return {m: round(t / n, 3) for m, (t, n) in totals.items() if n}


def _cells(summary: HubSummary, k: int, notes: list[Suppression]) -> tuple[CellSummary, ...]:
    out: list[CellSummary] = []
    small: dict[str, list[SummaryCell]] = defaultdict(list)
    for c in summary.cells:
        if c.device_class in HOUSEHOLD_CLASSES and c.devices < k:
            small[c.device_class].append(c)
            continue
        out.append(CellSummary(building=c.building, device_class=c.device_class, devices=c.devices, online=c.online,
                               readings=c.readings, means=_means([c])))
    for device_class, cells in sorted(small.items()):
        devices = sum(c.devices for c in cells)
        merged = devices >= k
        for c in cells:
            notes.append(Suppression(what=f"cell {c.building}/{device_class}", action="merged" if merged else "suppressed",
                                     into=f"cell {MERGED_BUILDING}/{device_class}" if merged else ""))
        if merged:
            out.append(CellSummary(building=MERGED_BUILDING, device_class=DeviceClass(device_class), devices=devices,
                                   online=sum(c.online for c in cells), readings=sum(c.readings for c in cells),
                                   means=_means(cells)))
    return tuple(out)


def _merge_small(counts: dict[str, int], k: int, what: str, notes: list[Suppression],
                 eligible: frozenset[str] | None = None) -> dict[str, int]:
    """Counts under k (of the ``eligible`` names, or all) merge into ``other``, or are
    suppressed if ``other`` is still under k."""
    out: dict[str, int] = {}
    small: list[str] = []
    for name, n in sorted(counts.items()):
        if (eligible is None or name in eligible) and 0 < n < k:
            small.append(name)
        else:
            out[name] = n
    if small:
        other = sum(counts[name] for name in small)
        kept = other + out.get(OTHER_EVENTS, 0) >= k
        for name in small:
            notes.append(Suppression(what=f"{what} {name}", action="merged" if kept else "suppressed",
                                     into=f"{what} {OTHER_EVENTS}" if kept else ""))
        if kept:
            out[OTHER_EVENTS] = out.get(OTHER_EVENTS, 0) + other
    return out


def _alerts(summary: HubSummary, k: int, notes: list[Suppression]
            ) -> tuple[dict[str, int], dict[str, int], HubHealth | None]:
    """Alert counts by type and by severity, and the hub's health, with household devices'
    alerts merged into one count of k or more, or suppressed."""
    household = sum(summary.household_alerts.values())
    by_type = {kind: n - summary.household_alerts.get(kind, 0) for kind, n in summary.alerts.items()}
    by_type = {kind: n for kind, n in by_type.items() if n > 0}
    by_severity, hub = dict(summary.alerts_by_severity), summary.hub
    if household >= k:
        notes.append(Suppression(what="alerts on household devices", action="merged",
                                 into=f"alerts {HOUSEHOLD_ALERTS}"))
        by_type[HOUSEHOLD_ALERTS] = by_type.get(HOUSEHOLD_ALERTS, 0) + household
    elif household:
        notes.append(Suppression(what="alerts on household devices", action="suppressed"))
        for severity, n in summary.household_alerts_by_severity.items():
            by_severity[severity] = by_severity.get(severity, 0) - n
        by_severity = {s: n for s, n in by_severity.items() if n > 0}
        if hub is not None:
            hub = hub.model_copy(update={"alerts_raised": max(0, hub.alerts_raised - household)})
    return by_type, by_severity, hub


ENVIRONMENT = ("temperature", "humidity", "pm2_5")


def _utilities(use: UtilityUse | None, k: int, notes: list[Suppression]) -> UtilityUse | None:
    """Consumption summed over fewer than k meters would describe households: suppressed."""
    if use is None:
        return None
    fields = use.model_dump()
    for kind, unit in (("electricity", "kwh"), ("water", "m3")):
        if 0 < fields[f"{kind}_meters"] < k:
            notes.append(Suppression(what=f"utilities {kind}", action="suppressed"))
            fields[f"{kind}_{unit}"], fields[f"{kind}_meters"] = 0.0, 0
    return UtilityUse(**fields)


def to_city(summary: HubSummary, *, k: int = K_DEFAULT, device_salt: bytes = b"",
            household_devices: frozenset[str] = frozenset()) -> CommunitySummary:
    """``device_salt``: the community's secret for device_ref; without one no device
    reference is sent at all. ``household_devices``: devices of one household each (meters),
    which are never referred to, not even by hash."""
    notes: list[Suppression] = []
    cells = _cells(summary, k, notes)
    events = _merge_small(summary.events, k, "events", notes, RESIDENT_EVENTS)  # residents' doing only
    requests = _merge_small(summary.requests, k, "requests", notes)
    utilities = _utilities(summary.utilities, k, notes)
    alerts, alerts_by_severity, hub = _alerts(summary, k, notes)
    environment = _means([c for c in summary.cells if c.device_class not in HOUSEHOLD_CLASSES])
    return CommunitySummary(
        key=summary_key(summary.community, summary.window_start, summary.period_s),
        revision=summary.revision,
        period_s=summary.period_s,
        community=summary.community,
        window_start=summary.window_start,
        window_end=summary.window_end,
        devices=sum(c.devices for c in cells),
        online=sum(c.online for c in cells),
        readings=sum(c.readings for c in cells),
        cells=cells,
        alerts=alerts,
        events=events,
        alerts_by_severity=alerts_by_severity,
        requests=requests,
        work_orders=summary.work_orders,
        environment={m: v for m, v in environment.items() if m in ENVIRONMENT},
        utilities=utilities,
        hub=hub,
        offline_devices=tuple(sorted(device_ref(device_salt, summary.community, d) for d in summary.offline_devices
                                     if d not in household_devices)) if device_salt else (),
        k=k,
        suppressed=tuple(notes),
    )
