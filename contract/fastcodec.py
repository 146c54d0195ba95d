"""A fast path for the messages that arrive by the tens of thousands a second: telemetry at
the hub, backlogs of it after an outage, and the city's batches of community summaries.

msgspec decodes and checks a telemetry payload in well under half of pydantic's time
(``python benchmarks/decode.py``). Its Structs are not a second copy of the schema: they are
derived from the pydantic models at import (:mod:`contract.fastschema`), with the models'
constraints or stricter ones. The fast path only ever *accepts*: whatever it refuses goes to
:func:`contract.codec.decode_as` (or the model itself), whose verdict (and reason) is final,
so the contract stays defined by the pydantic models. ``tests/contract/test_fastcodec.py``
and ``tests/contract/test_fastschema.py`` check with generated payloads that it never
accepts what the models refuse and always reads the same values.
"""

import json
import re
from typing import Any

import msgspec

from contract.city import Batch, CommunitySummary
from contract.codec import MAX_BACKLOG_BYTES, MAX_PAYLOAD_BYTES, decode_as
from contract.fastschema import pattern_paths, python_pattern, struct_for
from contract.ids import ID_PATTERN
from contract.messages import Backlog, BacklogItem, Telemetry

__all__ = ["FastSummary", "FastTelemetry", "decode_batch", "decode_telemetry", "unpack_backlog"]

FastTelemetry = struct_for(Telemetry)
_decoder = msgspec.json.Decoder(FastTelemetry)


def decode_telemetry(payload: bytes, *, max_bytes: int = MAX_PAYLOAD_BYTES) -> FastTelemetry | Telemetry:
    """A telemetry message with the attributes of :class:`Telemetry`; DecodeError as decode_as."""
    if len(payload) <= max_bytes:
        try:
            return _decoder.decode(payload)
        except (msgspec.ValidationError, msgspec.DecodeError):
            pass
    return decode_as(Telemetry, payload, max_bytes=max_bytes)  # the verdict, with its reason


# An item's message is kept as the bytes it was sent as, and checked later as its own topic's.
_backlog_decoder = msgspec.json.Decoder(struct_for(Backlog, raw=frozenset({(BacklogItem, "message")})))


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
            if all(raw.lstrip()[:1] == b"{" for _, raw in items):  # the model's dict[str, Any]
                return items
    slow = decode_as(Backlog, payload, max_bytes=max_bytes)  # the verdict, with its reason
    return [(item.topic, json.dumps(item.message).encode()) for item in slow.items]


# -- the city's intake: batches of community summaries ------------------------------------

# In batches, ids are checked once per distinct value after decoding (see decode_batch): a
# batch repeats the same few buildings thousands of times.
_ID_RE = re.compile(python_pattern(ID_PATTERN))
_DEFER_IDS = frozenset({ID_PATTERN})
FastSummary = struct_for(CommunitySummary, deferred=_DEFER_IDS)
# Each summary is kept as the JSON it was sent as too: the city stores it as it arrived.
_batch_decoder = msgspec.json.Decoder(struct_for(Batch, raw=frozenset({(Batch, "summaries")}), deferred=_DEFER_IDS))
_summary_decoder = msgspec.json.Decoder(FastSummary)
_BATCH_ID_PATHS = [path for path in pattern_paths(Batch, ID_PATTERN) if path[0] != "summaries"]
_SUMMARY_ID_PATHS = pattern_paths(CommunitySummary, ID_PATTERN)


def _values_at(objs: list[Any], path: tuple[str, ...]) -> list[Any]:
    """The values at ``path`` in each of ``objs``, through sequences and past None."""
    for attr in path:
        found: list[Any] = []
        for obj in objs:
            value = getattr(obj, attr)
            if type(value) is tuple:
                found.extend(value)
            elif value is not None:
                found.append(value)
        objs = found
    return objs


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
        decoded = [s for s, _ in summaries]
        ids = {i for path in _BATCH_ID_PATHS for i in _values_at([batch], path)}
        ids.update(i for path in _SUMMARY_ID_PATHS for i in _values_at(decoded, path))
        if all(_ID_RE.match(i) for i in ids):
            return batch.key, batch.community, summaries
    slow = Batch.model_validate_json(body)  # the verdict, with its reason
    return slow.key, slow.community, [(_summary_decoder.decode(raw := s.model_dump_json().encode()), raw)
                                      for s in slow.summaries]
