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
from typing import Annotated, Literal

import msgspec

from contract.codec import MAX_BACKLOG_BYTES, MAX_PAYLOAD_BYTES, decode_as
from contract.ids import ID_PATTERN
from contract.messages import BACKLOG_MAX_ITEMS, Backlog, Telemetry

_Name = Annotated[str, msgspec.Meta(max_length=64)]


class FastTelemetry(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    seq: Annotated[int, msgspec.Meta(ge=0)]
    boot: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    ts: float
    device: Annotated[str, msgspec.Meta(pattern=ID_PATTERN)]
    metrics: Annotated[dict[_Name, float], msgspec.Meta(min_length=1, max_length=64)]
    v: Literal[1] = 1
    hist: bool = False
    quality: Annotated[dict[_Name, Literal["good", "stale", "comm_error"]], msgspec.Meta(max_length=64)] = {}


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
