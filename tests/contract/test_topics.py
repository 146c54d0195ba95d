import pytest

from contract import topics
from contract.topics import Topic, TopicError, TopicKind

pytestmark = pytest.mark.unit


def test_builders_round_trip_through_the_parser() -> None:
    assert topics.parse(topics.gateway_state("c1", "gw-1")) == Topic(TopicKind.STATE, "c1", "gw-1")
    assert topics.parse(topics.gateway_command("c1", "gw-1")) == Topic(TopicKind.COMMAND, "c1", "gw-1")
    assert topics.parse(topics.gateway_ack("c1", "gw-1")) == Topic(TopicKind.ACK, "c1", "gw-1")
    assert topics.parse(topics.device_telemetry("c1", "gw-1", "d-1")) == Topic(TopicKind.TELEMETRY, "c1", "gw-1", "d-1")
    assert topics.parse(topics.device_event("c1", "gw-1", "d-1")) == Topic(TopicKind.EVENT, "c1", "gw-1", "d-1")
    assert topics.parse(topics.hub_summary("c1")) == Topic(TopicKind.SUMMARY, "c1")
    assert topics.parse(topics.hub_alert("c1")) == Topic(TopicKind.ALERT, "c1")


def test_the_documented_example_topic() -> None:
    assert topics.device_telemetry("xihu-demo", "gw-b1", "b1-th-01") == "mb/v1/xihu-demo/gw-b1/b1-th-01/telemetry"


@pytest.mark.parametrize(("topic", "reason"), [
    ("field/gw-b1/b1-th-01", "outside the mb/ namespace"),
    ("mb", "outside the mb/ namespace"),
    ("mb/v2/c/g/state", "unsupported contract version 'v2'"),
    ("mb/v1/C/g/state", "invalid community id"),
    ("mb/v1/c/G!/state", "invalid gateway id"),
    ("mb/v1/c/g/d/state", "state is a gateway-level topic"),
    ("mb/v1/c/g/telemetry", "telemetry is a device-level topic"),
    ("mb/v1/c/g/d/colour", "unknown message kind 'colour'"),
    ("mb/v1/c/g/d/x/telemetry", "wrong number of topic levels"),
    ("mb/v1/c/_hub/other", "unknown hub topic"),
    ("mb/v1/c/g/D_1/telemetry", "invalid device id"),
])
def test_topics_outside_the_namespace_are_refused_with_a_reason(topic: str, reason: str) -> None:
    with pytest.raises(TopicError) as err:
        topics.parse(topic)
    assert err.value.reason == reason


def test_subscribe_filters_are_not_publish_topics() -> None:
    assert topics.filter_everything() == "mb/#"
    assert topics.filter_community("c1") == "mb/v1/c1/#"
