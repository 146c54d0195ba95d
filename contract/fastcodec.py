"""A fast path for the one message that arrives by the tens of thousands a second: telemetry.

msgspec decodes and checks a telemetry payload in about a tenth of pydantic's time
(``python benchmarks/decode.py``). It only ever *accepts*: whatever it refuses goes to
:func:`contract.codec.decode_as`, whose verdict (and reason) is final, so the contract
stays defined by the pydantic models. Its constraints are the models' constraints or
stricter, and ``tests/contract/test_fastcodec.py`` checks with generated payloads that
it never accepts what the models refuse and always reads the same values.
"""

import json
import math
import re
import sys
from typing import Annotated, Literal

import msgspec

from contract.codec import MAX_BACKLOG_BYTES, MAX_PAYLOAD_BYTES, decode_as
from contract.ids import ID_PATTERN
from contract.city import Batch
from contract.classes import DeviceClass
from contract.messages import BACKLOG_MAX_ITEMS, MAX_PERIOD_S, Backlog, Quality, QualityLevel, Telemetry

_Name = Annotated[str, msgspec.Meta(max_length=64)]
# msgspec matches with re.search, where "$" also matches before a final newline; the
# models' pattern (Rust's regex) does not. \Z keeps the fast path as strict.
_FAST_ID_PATTERN = ID_PATTERN.removesuffix("$") + r"\Z"
_Id = Annotated[str, msgspec.Meta(pattern=_FAST_ID_PATTERN)]


class FastTelemetry(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    seq: Annotated[int, msgspec.Meta(ge=0)]
    boot: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    ts: float
    device: _Id
    metrics: Annotated[dict[_Name, float], msgspec.Meta(min_length=1, max_length=64)]
    v: Literal[1] = 1
    hist: bool = False
    quality: Annotated[dict[_Name, Quality], msgspec.Meta(max_length=64)] = {}  # the contract's own Literal


_decoder = msgspec.json.Decoder(FastTelemetry)


def decode_telemetry(payload: bytes, *, max_bytes: int = MAX_PAYLOAD_BYTES) -> FastTelemetry | Telemetry:
    """A telemetry message with the attributes of :class:`Telemetry`; DecodeError as decode_as."""
    if len(payload) <= max_bytes:
        try:
            msg = _decoder.decode(payload)
        except (msgspec.ValidationError, msgspec.DecodeError):
            pass
        else:
            if math.isfinite(msg.ts) and all(math.isfinite(x) for x in msg.metrics.values()):
                return msg
    return decode_as(Telemetry, payload, max_bytes=max_bytes)  # the verdict, with its reason


class _FastItem(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    topic: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    message: msgspec.Raw


class _FastBacklog(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    items: Annotated[list[_FastItem], msgspec.Meta(min_length=1, max_length=BACKLOG_MAX_ITEMS)]
    v: Literal[1] = 1


_backlog_decoder = msgspec.json.Decoder(_FastBacklog)


def unpack_backlog(payload: bytes, *, max_bytes: int = MAX_BACKLOG_BYTES) -> list[tuple[str, bytes]]:
    """The ``(topic, payload)`` pairs of a backlog, each payload as the bytes it was sent as
    (an item's payload is checked later, as its own topic's message). DecodeError as decode_as."""
    if len(payload) <= max_bytes:
        try:
            bundle = _backlog_decoder.decode(payload)
        except (msgspec.ValidationError, msgspec.DecodeError):
            pass
        else:
            items = [(item.topic, bytes(item.message)) for item in bundle.items]
            if all(raw.lstrip()[:1] == b"{" for _, raw in items):
                return items
    slow = decode_as(Backlog, payload, max_bytes=max_bytes)  # the verdict, with its reason
    return [(item.topic, json.dumps(item.message).encode()) for item in slow.items]


# -- the city's intake: batches of community summaries ------------------------------------

_Count = Annotated[int, msgspec.Meta(ge=0)]
_Text128 = Annotated[str, msgspec.Meta(max_length=128)]


class _Struct(msgspec.Struct, forbid_unknown_fields=True, frozen=True, gc=False):
    pass


# JSON has no infinities, but msgspec reads an overflowing number (1e999) as one, which
# the models refuse: the bounds refuse it here too, at no cost.
_MAX = sys.float_info.max
_Finite = Annotated[float, msgspec.Meta(ge=-_MAX, le=_MAX)]
# In batches, ids are checked once per distinct value after decoding (see decode_batch):
# a batch repeats the same few buildings thousands of times.
_BatchId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class _FastCell(_Struct):
    building: _BatchId
    device_class: DeviceClass
    devices: _Count
    online: _Count
    readings: _Count
    means: dict[str, _Finite] = {}


class _FastSuppression(_Struct):
    what: _Text128
    action: Literal["merged", "suppressed"]
    into: _Text128 = ""


class _FastWorkOrders(_Struct):
    opened: _Count
    resolved: _Count
    overdue: _Count
    median_minutes_to_resolve: _Finite | None = None


class _FastUtilities(_Struct):
    electricity_kwh: Annotated[float, msgspec.Meta(ge=0, le=_MAX)] = 0.0
    electricity_meters: _Count = 0
    water_m3: Annotated[float, msgspec.Meta(ge=0, le=_MAX)] = 0.0
    water_meters: _Count = 0


class _FastHub(_Struct):
    readings_stored: _Count
    dead_letters: _Count
    alerts_raised: _Count
    devices: _Count
    devices_online: _Count
    points_by_quality: dict[QualityLevel, _Count] = {}


class FastSummary(_Struct):
    key: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    community: _BatchId
    window_start: _Finite
    window_end: _Finite
    devices: _Count
    online: _Count
    readings: _Count
    v: int = 1
    revision: Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)] = 0
    period_s: Annotated[int, msgspec.Meta(ge=0, le=MAX_PERIOD_S)] = 0
    cells: list[_FastCell] = []
    alerts: dict[str, int] = {}
    events: dict[str, int] = {}
    alerts_by_severity: dict[str, int] = {}
    requests: dict[str, int] = {}
    work_orders: _FastWorkOrders | None = None
    environment: dict[str, _Finite] = {}
    utilities: _FastUtilities | None = None
    hub: _FastHub | None = None
    offline_devices: Annotated[list[Annotated[str, msgspec.Meta(pattern=r"^d-[0-9a-f]{20}\Z")]],
                               msgspec.Meta(max_length=10_000)] = []
    k: Annotated[int, msgspec.Meta(ge=1)] = 5
    suppressed: list[_FastSuppression] = []


class _FastBatch(_Struct):
    key: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    community: _BatchId
    sent_at: _Finite
    summaries: Annotated[list[msgspec.Raw], msgspec.Meta(min_length=1, max_length=10_000)]
    v: int = 1


_batch_decoder = msgspec.json.Decoder(_FastBatch)
_ID = re.compile(_FAST_ID_PATTERN)
_summary_decoder = msgspec.json.Decoder(FastSummary)


def decode_batch(body: bytes) -> tuple[str, str, list[tuple[FastSummary, bytes]]]:
    """A batch's key, community, and each summary with its JSON as sent, checked against
    :class:`contract.city.Batch`. What msgspec refuses goes to the pydantic models, whose
    verdict stands: ValidationError (pydantic's) if they refuse it too."""
    try:
        batch = _batch_decoder.decode(body)
        summaries = [(_summary_decoder.decode(raw), bytes(raw)) for raw in batch.summaries]
    except (msgspec.ValidationError, msgspec.DecodeError):
        pass
    else:
        ids = {batch.community} | {s.community for s, _ in summaries} | {
            c.building for s, _ in summaries for c in s.cells}
        if all(_ID.match(i) for i in ids):
            return batch.key, batch.community, summaries
    slow = Batch.model_validate_json(body)  # the verdict, with its reason
    return slow.key, slow.community, [(_summary_decoder.decode(raw := s.model_dump_json().encode()), raw)
                                      for s in slow.summaries]

