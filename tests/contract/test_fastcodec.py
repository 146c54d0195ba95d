"""The msgspec fast path never accepts what the pydantic contract refuses, and reads the same values."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contract.codec import DecodeError, decode_as, pack_backlog
from contract.fastcodec import FastTelemetry, decode_telemetry, unpack_backlog
from contract.messages import Backlog, Telemetry

pytestmark = pytest.mark.unit

_values = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=False),
                    st.text(max_size=70), st.just(1e308), st.lists(st.integers(), max_size=2))
_names = st.one_of(st.sampled_from(["temperature", "humidity"]), st.text(max_size=70))
_fields = {
    "v": st.one_of(st.just(1), _values),
    "seq": st.one_of(st.integers(-5, 2**66), _values),
    "boot": st.one_of(st.text(min_size=1, max_size=66), _values),
    "ts": st.one_of(st.floats(allow_nan=False), _values),
    "device": st.one_of(st.sampled_from(["b1-th-01", "B1", "-x", "a" * 65, "ok-1"]), _values),
    "metrics": st.one_of(st.dictionaries(_names, st.one_of(st.floats(allow_nan=False), _values), max_size=66), _values),
    "hist": st.one_of(st.booleans(), _values),
    "quality": st.one_of(st.dictionaries(_names, st.sampled_from(["good", "stale", "comm_error", "bad"]), max_size=3),
                         _values),
    "extra": _values,
}


@settings(max_examples=3000, deadline=None)
@given(st.fixed_dictionaries({}, optional=_fields))
def test_fast_path_agrees_with_the_contract(doc: dict) -> None:
    payload = json.dumps(doc).encode()
    try:
        reference = decode_as(Telemetry, payload)
    except DecodeError:
        reference = None
    try:
        fast = decode_telemetry(payload)
    except DecodeError:
        fast = None
    assert (reference is None) == (fast is None)
    if isinstance(fast, FastTelemetry):
        assert reference is not None
        assert (fast.seq, fast.boot, fast.ts, fast.device, fast.metrics, fast.hist, dict(fast.quality)) == \
            (reference.seq, reference.boot, reference.ts, reference.device, reference.metrics, reference.hist,
             dict(reference.quality))


def test_typical_payload_takes_the_fast_path_and_bad_ones_keep_their_reason() -> None:
    good = b'{"v":1,"seq":1,"boot":"b","ts":1.5,"device":"b1-th-01","metrics":{"temperature":21.5}}'
    assert isinstance(decode_telemetry(good), FastTelemetry)
    with pytest.raises(DecodeError) as err:
        decode_telemetry(b'{"v":1,"seq":"one","boot":"b","ts":1.5,"device":"b1-th-01","metrics":{"t":1}}')
    assert err.value.reason == "schema" and "seq" in err.value.detail
    with pytest.raises(DecodeError) as err:
        decode_telemetry(b'\xff\xfe')
    assert err.value.reason == "invalid-utf8"
    big = b'{"v":1,"seq":1,"boot":"b","ts":1e999,"device":"b1-th-01","metrics":{"t":1}}'
    with pytest.raises(DecodeError):
        decode_telemetry(big)


_item = st.fixed_dictionaries({}, optional={"topic": st.one_of(st.text(min_size=0, max_size=260), _values),
                                            "message": st.one_of(st.dictionaries(st.text(max_size=5), _values,
                                                                                 max_size=3), _values),
                                            "extra": _values})


@settings(max_examples=2000, deadline=None)
@given(st.fixed_dictionaries({}, optional={"v": st.one_of(st.just(1), _values),
                                           "items": st.one_of(st.lists(_item, max_size=4), _values),
                                           "extra": _values}))
def test_backlog_unpacking_agrees_with_the_contract(doc: dict) -> None:
    payload = json.dumps(doc).encode()
    try:
        reference = [(i.topic, i.message) for i in decode_as(Backlog, payload).items]
    except DecodeError:
        reference = None
    try:
        fast = [(topic, json.loads(raw)) for topic, raw in unpack_backlog(payload)]
    except DecodeError:
        fast = None
    assert fast == reference


@given(st.lists(st.tuples(st.text(min_size=1, max_size=40), st.dictionaries(st.text(max_size=5), st.integers(), max_size=3)),
                min_size=1, max_size=5))
def test_a_packed_backlog_is_a_valid_backlog_of_the_same_items(items: list[tuple[str, dict]]) -> None:
    payload = pack_backlog((topic, json.dumps(message).encode()) for topic, message in items)
    assert [(i.topic, i.message) for i in decode_as(Backlog, payload).items] == items
    assert [(t, json.loads(raw)) for t, raw in unpack_backlog(payload)] == items


# -- the city's batches ------------------------------------------------------------------

def _valid_batch() -> dict:
    from contract.city import Batch, CellSummary, CommunitySummary
    from contract.messages import HubHealth, UtilityUse, WorkOrderStats

    summary = CommunitySummary(
        key="c1:1", community="c1", window_start=0.0, window_end=60.0, devices=3, online=2, readings=9,
        cells=(CellSummary(building="b1", device_class="smoke", devices=3, online=2, readings=9,
                           means={"temperature": 21.5}),),
        alerts={"fire": 1}, requests={"repair": 5}, work_orders=WorkOrderStats(opened=1, resolved=0, overdue=0),
        environment={"temperature": 21.5}, utilities=UtilityUse(water_m3=0.5, water_meters=6),
        hub=HubHealth(readings_stored=9, dead_letters=0, alerts_raised=1, devices=3, devices_online=2),
        offline_devices=("d-0123456789abcdef0123",))
    return json.loads(Batch(key="b", community="c1", sent_at=1.0, summaries=(summary,)).model_dump_json())


_BATCH_MUTATIONS = [
    ("community", "c1\n"), ("community", "C1"), ("key", ""), ("key", "k" * 129), ("summaries", []), ("sent_at", "x"),
    ("summaries.0.community", "c1\n"), ("summaries.0.devices", -1), ("summaries.0.revision", -1),
    ("summaries.0.revision", 2**64),
    ("summaries.0.window_end", 1e999), ("summaries.0.cells.0.device_class", "toaster"),
    ("summaries.0.cells.0.building", "B 1"), ("summaries.0.cells.0.means", {"temperature": "hot"}),
    ("summaries.0.cells.0.resident", "王小明"), ("summaries.0.device_id", "b1-smoke-01"), ("summaries.0.k", 0),
    ("summaries.0.suppressed", [{"what": "x", "action": "hidden"}]), ("summaries.0.utilities.water_m3", -0.1),
    ("summaries.0.work_orders.opened", 1.5), ("summaries.0.environment", {"temperature": 1e999}),
    ("summaries.0.hub.devices", None), ("summaries.0.offline_devices", ["b1-smoke-01"]),
    ("summaries.0.offline_devices", ["d-0123456789abcdef0123\n"]), ("summaries.0.offline_devices", ["d-0123"]),
]


def _mutate(doc: dict, path: str, value: object) -> bytes:
    target: object = doc
    *parents, last = path.split(".")
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target[part]  # type: ignore[index]
    target[int(last) if isinstance(target, list) else last] = value  # type: ignore[index]
    return json.dumps(doc, ensure_ascii=False).replace("Infinity", "1e999").encode()


@pytest.mark.parametrize(("path", "value"), _BATCH_MUTATIONS)
def test_the_batch_fast_path_refuses_what_the_city_models_refuse(path: str, value: object) -> None:
    from pydantic import ValidationError

    from contract.city import Batch
    from contract.fastcodec import decode_batch

    body = _mutate(_valid_batch(), path, value)
    with pytest.raises(ValidationError):
        Batch.model_validate_json(body)
    with pytest.raises(ValidationError):  # refused by msgspec, then by pydantic, whose verdict it raises
        decode_batch(body)


def test_the_batch_fast_path_reads_a_valid_batch_as_the_models_do() -> None:
    from contract.city import Batch
    from contract.fastcodec import decode_batch

    body = json.dumps(_valid_batch()).encode()
    key, community, summaries = decode_batch(body)
    model = Batch.model_validate_json(body)
    assert (key, community) == (model.key, model.community)
    assert [json.loads(raw) for _, raw in summaries] == [json.loads(s.model_dump_json()) for s in model.summaries]
    assert summaries[0][0].cells[0].means == {"temperature": 21.5}


def test_an_id_with_a_trailing_newline_is_refused_by_the_telemetry_fast_path_too() -> None:
    """msgspec matches patterns with re.search, where "$" also matches before a final newline."""
    payload = b'{"v":1,"seq":1,"boot":"b","ts":1.0,"device":"b1-th-01\\n","metrics":{"temperature":1.0}}'
    with pytest.raises(DecodeError):
        decode_telemetry(payload)
