"""Turn a local device's raw reading into contract messages. Pure functions.

Local MQTT devices publish on ``{prefix}/{gateway}/{device}``::

    {"ts": 1764230000.5, "values": {"temperature": 21.5, "humidity": 48.2}}
    {"ts": 1764230000.5, "values": {"temperature": 85.0}, "quality": {"temperature": "sensor_fault"}}
    {"ts": 1764230000.5, "event": "service_request", "severity": "info", "data": {"category": "repair"}}

A device may mark its own points (``quality``, reasons as in the contract's
QUALITY_LEVELS). The edge marks what it sees itself: a value outside the range its class
can measure is ``out_of_range`` (kept, and so stored and shown, but left out of windows,
scores and rules at the hub), a point a serial device did not answer is ``comm_error``.
"""

import json
import math
from typing import Any

from contract.classes import CATALOG, ClassSpec
from contract.messages import QUALITY_LEVELS


class RawRejected(ValueError):
    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def parse_raw(payload: bytes, spec: ClassSpec) -> tuple[float | None, dict[str, float] | None, dict[str, Any] | None,
                                                       dict[str, str]]:
    """Return ``(ts, values, event, quality)``; exactly one of values/event is set, and
    ``quality`` holds the points the device itself marked (empty for an event)."""
    try:
        doc = json.loads(payload)
    except (UnicodeDecodeError, ValueError) as exc:
        raise RawRejected("invalid-json", str(exc)) from None
    if not isinstance(doc, dict):
        raise RawRejected("not-an-object", type(doc).__name__)
    ts = doc.get("ts")
    if ts is not None and (not isinstance(ts, (int, float)) or not math.isfinite(ts)):
        raise RawRejected("bad-timestamp", repr(ts))
    if "event" in doc:
        event = doc["event"]
        if not isinstance(event, str):
            raise RawRejected("bad-event", repr(event))
        return ts, None, {"event": event, "severity": doc.get("severity", "info"), "data": doc.get("data", {})}, {}
    values = doc.get("values")
    if not isinstance(values, dict) or not values:
        raise RawRejected("no-values", "expected a non-empty 'values' object")
    out: dict[str, float] = {}
    for name, value in values.items():
        if spec.metric(name) is None:
            raise RawRejected("unknown-metric", f"{spec.device_class} has no metric {name!r}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise RawRejected("bad-value", f"{name}={value!r}")
        out[name] = float(value)
    marked = doc.get("quality", {})
    if not isinstance(marked, dict):
        raise RawRejected("bad-quality", "expected an object of point: reason")
    quality: dict[str, str] = {}
    for name, reason in marked.items():
        if spec.metric(name) is None:
            raise RawRejected("unknown-metric", f"{spec.device_class} has no metric {name!r} (in quality)")
        if reason not in QUALITY_LEVELS:
            raise RawRejected("bad-quality", f"{name}={reason!r}; expected one of {', '.join(QUALITY_LEVELS)}")
        if reason != "good":
            quality[name] = reason
    return ts, out, None, quality


def mark_out_of_range(spec: ClassSpec, values: dict[str, float], quality: dict[str, str]) -> dict[str, str]:
    """``quality`` with every value its class cannot measure marked out_of_range, unless the
    device already gave that point a reason of its own."""
    marked = quality  # copied only if something is marked: this runs for every reading
    for name, value in values.items():
        metric = spec.metric(name)
        if metric is not None and not metric.low <= value <= metric.high and name not in marked:
            if marked is quality:
                marked = dict(quality)
            marked[name] = "out_of_range"
    return marked


def spec_for(device_class: str) -> ClassSpec:
    return CATALOG[device_class]  # type: ignore[index]
