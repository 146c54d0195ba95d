import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contract.codec import DecodeError, decode, encode
from contract.messages import Birth, Death, DeviceInfo, Event, Telemetry
from contract.topics import TopicKind

pytestmark = pytest.mark.unit


def test_telemetry_round_trip_and_schema_version() -> None:
    msg = Telemetry(seq=7, boot="b", ts=1.5, device="b1-th-01", metrics={"temperature": 21.5})
    raw = encode(msg)
    assert json.loads(raw)["v"] == 1
    assert decode(TopicKind.TELEMETRY, raw) == msg


def test_state_topic_carries_birth_or_death() -> None:
    birth = Birth(ts=1.0, boot="b", seq=1, software="x",
                  devices=(DeviceInfo.model_validate({"id": "d1", "class": "smoke"}),))
    assert json.loads(encode(birth))["devices"] == [{"id": "d1", "class": "smoke"}]
    assert decode(TopicKind.STATE, encode(birth)) == birth
    assert decode(TopicKind.STATE, encode(Death(boot="b"))) == Death(boot="b")


@pytest.mark.parametrize(("payload", "reason"), [
    (b"\xff\xfe", "invalid-utf8"),
    (b"{not json", "invalid-json"),
    (b'{"v":1,"seq":1,"boot":"b","ts":1,"device":"d","metrics":{"t":"hot"}}', "schema"),
    (b'{"v":2,"seq":1,"boot":"b","ts":1,"device":"d","metrics":{"t":1}}', "schema"),
    (b'{"v":1,"seq":1,"boot":"b","ts":1,"device":"d","metrics":{}}', "schema"),
    (b'{"v":1,"seq":1,"boot":"b","ts":1,"device":"d","metrics":{"t":1e999}}', "schema"),
    (b'{"v":1,"seq":-1,"boot":"b","ts":1,"device":"d","metrics":{"t":1}}', "schema"),
    (b'{"v":1,"seq":1,"boot":"b","ts":1,"device":"d","metrics":{"t":1},"extra":1}', "schema"),
    (b"x" * 70_000, "oversize"),
])
def test_bad_payloads_get_a_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as err:
        decode(TopicKind.TELEMETRY, payload)
    assert err.value.reason == reason


def test_event_names_are_snake_case() -> None:
    event = Event(seq=1, boot="b", ts=1.0, device="k1", event="service_request", data={"category": "repair"})
    assert decode(TopicKind.EVENT, encode(event)) == event


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(list(TopicKind)), payload=st.binary(max_size=512))
def test_any_bytes_decode_or_raise_decode_error(kind: TopicKind, payload: bytes) -> None:
    try:
        decode(kind, payload)
    except DecodeError:
        pass
