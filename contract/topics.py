"""Topic builders and the topic parser.

Namespace (``mb/v1`` is the contract version)::

    mb/v1/{community}/{gateway}/state                 gateway birth / death (retained, LWT)
    mb/v1/{community}/{gateway}/cmd                   command to a gateway (hub -> edge)
    mb/v1/{community}/{gateway}/ack                   command acknowledgement (edge -> hub)
    mb/v1/{community}/{gateway}/health                gateway health: CPU, memory, disk, spool (edge -> hub)
    mb/v1/{community}/{gateway}/backlog               spooled messages replayed in bundles (edge -> hub)
    mb/v1/{community}/{gateway}/{device}/telemetry    readings (edge -> hub)
    mb/v1/{community}/{gateway}/{device}/event        discrete events (edge -> hub)
    mb/v1/{community}/_hub/summary                    per-window community summary (hub -> bridge)
    mb/v1/{community}/_hub/alert                      an alert, as it is raised (hub -> anyone)
    mb/v1/{community}/_hub/downlink_ack               the hub's answer to a city item (hub -> bridge)
    mb/v1/{community}/_city/downlink                  a signed item from the city (bridge -> hub)

Publish topics are built by the functions below; subscribe filters are separate
functions, because a filter is not a topic.
"""

from dataclasses import dataclass
from enum import StrEnum

from contract.ids import is_ident

PREFIX = "mb"
VERSION = "v1"
HUB_LEVEL = "_hub"
CITY_LEVEL = "_city"


class TopicKind(StrEnum):
    STATE = "state"
    COMMAND = "cmd"
    ACK = "ack"
    HEALTH = "health"
    BACKLOG = "backlog"
    TELEMETRY = "telemetry"
    EVENT = "event"
    SUMMARY = "summary"
    ALERT = "alert"
    DOWNLINK = "downlink"
    DOWNLINK_ACK = "downlink_ack"


_GATEWAY_KINDS = {TopicKind.STATE, TopicKind.COMMAND, TopicKind.ACK, TopicKind.HEALTH, TopicKind.BACKLOG}
_DEVICE_KINDS = {TopicKind.TELEMETRY, TopicKind.EVENT}


class TopicError(ValueError):
    """A topic outside the midbrain namespace."""

    def __init__(self, topic: str, reason: str) -> None:
        super().__init__(f"{reason}: {topic!r}")
        self.topic = topic
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Topic:
    """A parsed midbrain topic."""

    kind: TopicKind
    community: str
    gateway: str | None = None
    device: str | None = None


def _base(community: str) -> str:
    return f"{PREFIX}/{VERSION}/{community}"


def gateway_state(community: str, gateway: str) -> str:
    return f"{_base(community)}/{gateway}/{TopicKind.STATE}"


def gateway_command(community: str, gateway: str) -> str:
    return f"{_base(community)}/{gateway}/{TopicKind.COMMAND}"


def gateway_ack(community: str, gateway: str) -> str:
    return f"{_base(community)}/{gateway}/{TopicKind.ACK}"


def gateway_health(community: str, gateway: str) -> str:
    return f"{_base(community)}/{gateway}/{TopicKind.HEALTH}"


def gateway_backlog(community: str, gateway: str) -> str:
    return f"{_base(community)}/{gateway}/{TopicKind.BACKLOG}"


def device_telemetry(community: str, gateway: str, device: str) -> str:
    return f"{_base(community)}/{gateway}/{device}/{TopicKind.TELEMETRY}"


def device_event(community: str, gateway: str, device: str) -> str:
    return f"{_base(community)}/{gateway}/{device}/{TopicKind.EVENT}"


def hub_summary(community: str) -> str:
    return f"{_base(community)}/{HUB_LEVEL}/{TopicKind.SUMMARY}"


def hub_alert(community: str) -> str:
    return f"{_base(community)}/{HUB_LEVEL}/{TopicKind.ALERT}"


def hub_downlink_ack(community: str) -> str:
    return f"{_base(community)}/{HUB_LEVEL}/{TopicKind.DOWNLINK_ACK}"


def city_downlink(community: str) -> str:
    return f"{_base(community)}/{CITY_LEVEL}/{TopicKind.DOWNLINK}"


# -- subscribe filters -------------------------------------------------------------


def filter_everything() -> str:
    """Everything under the project prefix, including other versions (to dead-letter them)."""
    return f"{PREFIX}/#"


def filter_community(community: str) -> str:
    return f"{_base(community)}/#"


def filter_hub_summaries(community: str) -> str:
    return hub_summary(community)


def filter_gateway_commands(community: str, gateway: str) -> str:
    return gateway_command(community, gateway)


# -- parsing ------------------------------------------------------------------------


def parse(topic: str) -> Topic:
    """Parse a topic into a :class:`Topic`, or raise :class:`TopicError` saying why not."""
    levels = topic.split("/")
    if len(levels) < 4 or levels[0] != PREFIX:
        raise TopicError(topic, "outside the mb/ namespace")
    if levels[1] != VERSION:
        raise TopicError(topic, f"unsupported contract version {levels[1]!r}")
    community = levels[2]
    if not is_ident(community):
        raise TopicError(topic, "invalid community id")
    rest = levels[3:]
    if rest[0] == HUB_LEVEL:
        if rest == [HUB_LEVEL, TopicKind.SUMMARY]:
            return Topic(TopicKind.SUMMARY, community)
        if rest == [HUB_LEVEL, TopicKind.ALERT]:
            return Topic(TopicKind.ALERT, community)
        if rest == [HUB_LEVEL, TopicKind.DOWNLINK_ACK]:
            return Topic(TopicKind.DOWNLINK_ACK, community)
        raise TopicError(topic, "unknown hub topic")
    if rest[0] == CITY_LEVEL:
        if rest == [CITY_LEVEL, TopicKind.DOWNLINK]:
            return Topic(TopicKind.DOWNLINK, community)
        raise TopicError(topic, "unknown city topic")
    gateway = rest[0]
    if not is_ident(gateway):
        raise TopicError(topic, "invalid gateway id")
    if len(rest) == 2:
        kind = _kind(topic, rest[1])
        if kind not in _GATEWAY_KINDS:
            raise TopicError(topic, f"{kind} is a device-level topic")
        return Topic(kind, community, gateway)
    if len(rest) == 3:
        device, kind = rest[1], _kind(topic, rest[2])
        if not is_ident(device):
            raise TopicError(topic, "invalid device id")
        if kind not in _DEVICE_KINDS:
            raise TopicError(topic, f"{kind} is a gateway-level topic")
        return Topic(kind, community, gateway, device)
    raise TopicError(topic, "wrong number of topic levels")


def _kind(topic: str, level: str) -> TopicKind:
    try:
        return TopicKind(level)
    except ValueError:
        raise TopicError(topic, f"unknown message kind {level!r}") from None
