"""Typed, frozen message models. Every payload carries ``v``, the schema version."""

import math
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from contract.classes import DeviceClass
from contract.ids import Ident

SCHEMA_VERSION = 1
MAX_PERIOD_S = 31 * 86400  # the longest roll-up window a summary may describe


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


FiniteFloat = Annotated[float, AfterValidator(_finite)]

# Event names are snake_case words (``smoke_alarm``, ``service_request``).
EventName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]


class Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=False)

    v: Literal[1] = SCHEMA_VERSION


class DeviceInfo(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: Ident
    device_class: DeviceClass = Field(alias="class")


class Birth(Message):
    """Gateway birth: published retained on the state topic when the edge agent connects."""

    state: Literal["online"] = "online"
    ts: FiniteFloat
    boot: str = Field(min_length=1, max_length=64)  # one id per agent run; (gateway, boot, seq) is unique
    seq: int = Field(ge=0)
    software: str = Field(max_length=64)
    devices: tuple[DeviceInfo, ...] = ()


class Death(Message):
    """Gateway death: the MQTT Last Will (retained), or published on clean shutdown."""

    state: Literal["offline"] = "offline"
    boot: str = Field(min_length=1, max_length=64)
    clean: bool = False


# A point's quality travels as the reason it is not good; each reason has one level. A
# point not listed is good. (Sparkplug and OPC UA speak of good, uncertain and bad too.)
QUALITY_LEVELS: dict[str, Literal["good", "uncertain", "bad"]] = {
    "good": "good",
    "comm_error": "bad",  # not read this time (absent from metrics)
    "out_of_range": "bad",  # read, but outside what the device or its class can measure
    "sensor_fault": "bad",  # the device reported a fault of its own for this point
    "stale": "uncertain",  # the device answered with a value it did not refresh
    "substituted": "uncertain",  # not measured: filled in (the last good value, or a set one)
}
Quality = Literal["good", "comm_error", "out_of_range", "sensor_fault", "stale", "substituted"]
QualityLevel = Literal["good", "uncertain", "bad"]


def quality_level(reason: str | None) -> QualityLevel:
    """The level of a point's quality reason (None: not listed, so good)."""
    return "good" if reason is None else QUALITY_LEVELS[reason]


class Telemetry(Message):
    seq: int = Field(ge=0)
    boot: str = Field(min_length=1, max_length=64)
    ts: FiniteFloat
    device: Ident
    metrics: dict[Annotated[str, Field(max_length=64)], FiniteFloat] = Field(min_length=1, max_length=64)
    hist: bool = False  # replayed from the edge spool rather than live
    # Points whose quality is not "good", by reason (QUALITY_LEVELS): a point the device
    # failed to read this time is comm_error and absent from metrics; a bad or uncertain
    # point in metrics is stored and shown, and a bad one is left out of windows, scores,
    # rules and aggregates. Empty: every metric is good.
    quality: dict[Annotated[str, Field(max_length=64)], Quality] = Field(default_factory=dict, max_length=64)


class Event(Message):
    seq: int = Field(ge=0)
    boot: str = Field(min_length=1, max_length=64)
    ts: FiniteFloat
    device: Ident
    event: EventName
    severity: Literal["info", "warning", "critical"] = "info"
    data: dict[Annotated[str, Field(max_length=64)], str | FiniteFloat | bool] = Field(default_factory=dict, max_length=32)


class Command(Message):
    """A request to a gateway. ``set_interval`` needs ``device`` and ``value`` (seconds);
    ``write`` needs ``device``, ``point`` and ``value``; ``read_now`` needs ``device``;
    ``enable_point`` and ``disable_point`` need ``device`` and ``point`` (a disabled point is
    still read but not reported)."""

    id: str = Field(min_length=1, max_length=64)
    ts: FiniteFloat
    command: Literal["ping", "rebirth", "read_now", "set_interval", "write", "enable_point", "disable_point"]
    device: Ident | None = None
    point: str | None = Field(default=None, max_length=64)
    value: FiniteFloat | None = None


class GatewayHealth(Message):
    """The gateway's own health, published every ``health_interval_s``."""

    ts: FiniteFloat
    boot: str = Field(min_length=1, max_length=64)
    cpu_pct: FiniteFloat
    memory_pct: FiniteFloat
    disk_pct: FiniteFloat
    agent_rss_mb: FiniteFloat
    spool_depth: int = Field(ge=0)
    spool_oldest_s: FiniteFloat
    devices_online: int = Field(ge=0)
    devices_offline: int = Field(ge=0)
    device_errors: dict[Annotated[str, Field(max_length=64)], int] = Field(default_factory=dict, max_length=1024)


class Ack(Message):
    id: str = Field(min_length=1, max_length=64)
    ts: FiniteFloat
    result: Literal["ok", "refused", "error"]
    reason: str = Field(default="", max_length=256)


BACKLOG_MAX_ITEMS = 1000
# Kinds a backlog may carry: what an agent spools while its broker is away.
BACKLOG_KINDS = frozenset({"telemetry", "event", "health", "ack"})


class BacklogItem(BaseModel):
    """One spooled message: the topic it would have been published on, and its payload."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    topic: str = Field(min_length=1, max_length=256)
    message: dict[str, Any]  # checked against the model of ``topic``'s kind, as if it had arrived alone


class Backlog(Message):
    """Spooled messages an agent replays after an outage, many to one MQTT message, in spool
    order. Each item is handled as if it had arrived on its own topic; its topic must belong
    to the gateway that publishes the backlog. Telemetry in a backlog carries ``hist``."""

    items: tuple[BacklogItem, ...] = Field(min_length=1, max_length=BACKLOG_MAX_ITEMS)


class MetricStats(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    count: int = Field(ge=0)
    mean: FiniteFloat
    min: FiniteFloat
    max: FiniteFloat


class SummaryCell(BaseModel):
    """One (building, device class) cell of a hub summary. Carries no device identifiers."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    building: Ident
    device_class: DeviceClass
    devices: int = Field(ge=0)
    online: int = Field(ge=0)
    readings: int = Field(ge=0)
    metrics: dict[str, MetricStats] = Field(default_factory=dict)


class Alert(Message):
    """An alert as the hub raises it: a rule's (``threshold``) or the model's (``fire``,
    ``spike``, ``stuck``, ``drift``). Published once; the hub's API keeps the record."""

    id: int = Field(ge=0)
    device: Ident
    metric: str = Field(max_length=64)
    kind: EventName
    severity: Literal["info", "warning", "critical"]
    score: FiniteFloat  # the value that crossed a threshold, or the model's score
    ts: FiniteFloat  # of the reading or window that raised it
    raised_at: FiniteFloat


class HubSummary(Message):
    """Per-window community summary the hub publishes for the bridge."""

    community: Ident
    window_start: FiniteFloat
    window_end: FiniteFloat
    # 0 when first published; each revision (late data for the window, e.g. an edge's replay
    # after an outage) carries the whole window again with the next number.
    revision: int = Field(default=0, ge=0, le=2**63 - 1)
    # 0: a window of the hub's summary interval. Otherwise a roll-up: a coarser window of
    # this many seconds (hourly, say), made from the summaries of the windows in it.
    period_s: int = Field(default=0, ge=0, le=MAX_PERIOD_S)
    cells: tuple[SummaryCell, ...]
    alerts: dict[str, int] = Field(default_factory=dict)  # by alert type
    events: dict[str, int] = Field(default_factory=dict)  # by event type
    dead_letters: int = Field(default=0, ge=0)
    alerts_by_severity: dict[str, int] = Field(default_factory=dict)
    # Of the alerts above, those raised on household devices (contract.classes.HOUSEHOLD_CLASSES),
    # by type and by severity: they describe households, so the bridge sends them only merged
    # into one count of k or more, and otherwise not at all.
    household_alerts: dict[str, int] = Field(default_factory=dict)
    household_alerts_by_severity: dict[str, int] = Field(default_factory=dict)
    requests: dict[str, int] = Field(default_factory=dict)  # residents' requests at kiosks, by category
    # Devices offline at the window's end. Hub to bridge only: the bridge sends shared
    # (non-household) ones to the city as salted per-community hashes, never these ids.
    offline_devices: tuple[Ident, ...] = Field(default=(), max_length=10_000)
    work_orders: "WorkOrderStats | None" = None
    utilities: "UtilityUse | None" = None
    hub: "HubHealth | None" = None


class WorkOrderStats(BaseModel):
    """Work orders in a summary window: opened and resolved in it, overdue at its end."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    opened: int = Field(ge=0)
    resolved: int = Field(ge=0)
    overdue: int = Field(ge=0)
    median_minutes_to_resolve: FiniteFloat | None = None


class UtilityUse(BaseModel):
    """Consumption in a window, from the meters' cumulative registers (last minus first)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    electricity_kwh: FiniteFloat = Field(default=0.0, ge=0)
    electricity_meters: int = Field(default=0, ge=0)  # meters that reported in the window
    water_m3: FiniteFloat = Field(default=0.0, ge=0)
    water_meters: int = Field(default=0, ge=0)


class HubHealth(BaseModel):
    """The community mid-brain's own health over a window."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    readings_stored: int = Field(ge=0)
    dead_letters: int = Field(ge=0)
    alerts_raised: int = Field(ge=0)
    devices: int = Field(ge=0)
    devices_online: int = Field(ge=0)
    # Points read in the window, by quality level: the bad ones are counted here and left
    # out of the cells' statistics (and of windows, scores and rules).
    points_by_quality: dict[QualityLevel, Annotated[int, Field(ge=0)]] = Field(default_factory=dict)


HubSummary.model_rebuild()
