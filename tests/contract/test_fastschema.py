"""The msgspec Structs derived from the contract's models (contract.fastschema) decode every
message type as the models do: on generated payloads, valid and invalid, a Struct never
accepts what its model refuses, reads the same values when it accepts, and accepts every
valid payload written with the models' own types."""

import enum
import json
import types
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, StringConstraints, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from contract import codec
from contract.city import Batch, BatchAnswer, CommunitySummary, MqttBatchHeader
from contract.downlink import AckBatch, DownlinkItem
from contract.fastschema import Underivable, python_pattern, struct_for
from contract.messages import Birth, Death, FiniteFloat

pytestmark = pytest.mark.unit

# Every message a topic carries (codec's table), the state topic's two, and the city's bodies.
MODELS = sorted({*codec._MODELS.values(), Birth, Death, Batch, CommunitySummary, MqttBatchHeader, BatchAnswer,
                 AckBatch}, key=lambda m: m.__name__)

_FINITE = get_args(FiniteFloat)[1].func
_finite_junk = st.one_of(st.none(), st.booleans(), st.integers(-2**60, 2**60), st.floats(allow_nan=False, allow_infinity=False),
                         st.text(max_size=10), st.lists(st.integers(-9, 9), max_size=2))
_junk = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=False),
                  st.text(max_size=70), st.just(1e308), st.lists(st.integers(), max_size=2),
                  st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


def _bounds(metadata: list[Any]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for item in metadata:
        if isinstance(item, FieldInfo):
            found.update(_bounds(item.metadata))
        elif isinstance(item, StringConstraints) and item.pattern:
            found["pattern"] = python_pattern(str(item.pattern))
        elif getattr(item, "func", None) is _FINITE:
            found["finite"] = True
        else:
            for attr in ("ge", "gt", "le", "lt", "min_length", "max_length"):
                if isinstance(item, getattr(annotated_types, {"ge": "Ge", "gt": "Gt", "le": "Le", "lt": "Lt",
                                                              "min_length": "MinLen",
                                                              "max_length": "MaxLen"}[attr])):
                    found[attr] = getattr(item, attr)
    return found


def _values(annotation: Any, metadata: list[Any], valid: bool) -> st.SearchStrategy[Any]:
    """Values for a field: within its constraints when ``valid``, else anything near or far."""
    if get_origin(annotation) is Annotated:
        inner, *extra = get_args(annotation)
        return _values(inner, [*extra, *metadata], valid)
    typed = _typed(annotation, _bounds(metadata), valid)
    return typed if valid else st.one_of(typed, _typed(annotation, {}, False), _junk)


def _typed(annotation: Any, b: dict[str, Any], valid: bool) -> st.SearchStrategy[Any]:
    origin, args = get_origin(annotation), get_args(annotation)
    lo, hi = b.get("min_length", 0), min(b.get("max_length", 3), 3 if valid else 70)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return _documents(annotation, valid)
    if annotation is bool:
        return st.booleans()
    if annotation is int:
        low = b.get("ge", b["gt"] + 1 if "gt" in b else -2**63)
        return st.integers(low, b.get("le", 2**64 + 5)) if valid else st.integers(-3, 2**64 + 5)
    if annotation is float:
        if not valid:
            return st.one_of(st.floats(allow_nan=False), st.integers(-5, 5))
        return st.floats(b.get("ge"), b.get("le"), allow_nan=False, allow_infinity=False)
    if annotation is str:
        if "pattern" in b:
            return st.from_regex(b["pattern"], fullmatch=True).filter(lambda s: lo <= len(s) <= b.get("max_length", 1e9))
        return st.text(min_size=lo, max_size=b.get("max_length", 20) if valid else 70)
    if annotation is type(None):
        return st.none()
    if annotation is Any:
        return _finite_junk if valid else _junk
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return st.sampled_from([m.value for m in annotation])
    if origin is Literal:
        return st.sampled_from(args)
    if origin in (Union, types.UnionType):
        return st.one_of(*(_values(a, [], valid) for a in args))
    if origin is dict:
        keys = _values(args[0], [], True) if valid else st.one_of(_values(args[0], [], True), st.text(max_size=70))
        return st.dictionaries(keys, _values(args[1], [], valid), min_size=lo,
                               max_size=max(lo, hi))
    if origin in (tuple, list):
        return st.lists(_values(args[0], [], valid), min_size=lo, max_size=max(lo, hi))
    raise AssertionError(f"no strategy for {annotation!r}")


def _documents(model: type[BaseModel], valid: bool) -> st.SearchStrategy[dict[str, Any]]:
    required, optional = {}, {}
    for name, info in model.model_fields.items():
        values = _values(info.annotation, info.metadata, valid)
        key = info.alias or name
        is_required = info.default is PydanticUndefined and info.default_factory is None
        (required if valid and is_required else optional)[key] = values
    if not valid:
        optional["extra"] = _junk
    return st.fixed_dictionaries(required, optional=optional)


def _payload(doc: Any) -> bytes:
    # json writes an infinity as Infinity (not JSON); 1e999 is JSON and overflows to one.
    return json.dumps(doc).replace("-Infinity", "-1e999").replace("Infinity", "1e999").encode()


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                                                  HealthCheck.data_too_large])
@given(data=st.data())
def test_a_derived_struct_decodes_as_its_model(model: type[BaseModel], data: st.DataObject) -> None:
    valid = data.draw(st.booleans(), label="valid")
    payload = _payload(data.draw(_documents(model, valid), label="document"))
    try:
        reference = model.model_validate_json(payload)
    except ValidationError:
        reference = None
    try:
        fast = msgspec.json.decode(payload, type=struct_for(model))
    except (msgspec.ValidationError, msgspec.DecodeError):
        fast = None
    if fast is not None:
        assert reference is not None, f"{model.__name__}: msgspec accepts what the model refuses: {payload!r}"
        assert json.loads(msgspec.json.encode(fast)) == json.loads(reference.model_dump_json(by_alias=True))
    if valid and reference is not None:
        assert fast is not None, f"{model.__name__}: msgspec refuses a valid payload: {payload!r}"


def test_every_message_a_topic_carries_is_derived() -> None:
    assert set(codec._MODELS.values()) <= set(MODELS)


def test_a_model_the_structs_cannot_express_is_refused_at_derivation() -> None:
    """DownlinkItem's body is a discriminated union holding a model with a validator of its
    own: deriving it must fail loudly, not give a looser decoder."""
    with pytest.raises(Underivable):
        struct_for(DownlinkItem)


def test_a_trailing_newline_and_an_overflow_are_refused_by_a_derived_struct() -> None:
    """Python's "$" matches before a final newline, the models' (Rust's) does not; bounds
    stand in for FiniteFloat's validator."""
    telemetry = struct_for(codec._MODELS[codec.TopicKind.TELEMETRY])
    ok = b'{"seq":1,"boot":"b","ts":1.0,"device":"b1-th-01","metrics":{"t":1.0}}'
    assert msgspec.json.decode(ok, type=telemetry).device == "b1-th-01"
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(ok.replace(b'th-01"', b'th-01\\n"'), type=telemetry)
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(ok.replace(b'"ts":1.0', b'"ts":1e999'), type=telemetry)
