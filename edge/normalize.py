"""Turn a local device's raw reading into contract messages. Pure functions.

Local MQTT devices publish on ``{prefix}/{gateway}/{device}``::

    {"ts": 1764230000.5, "values": {"temperature": 21.5, "humidity": 48.2}}
    {"ts": 1764230000.5, "event": "service_request", "severity": "info", "data": {"category": "repair"}}
"""

import json
import math
from typing import Any

from contract.classes import CATALOG, ClassSpec


class RawRejected(ValueError):
    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def parse_raw(payload: bytes, spec: ClassSpec) -> tuple[float | None, dict[str, float] | None, dict[str, Any] | None]:
    """Return ``(ts, values, event)``; exactly one of values/event is set."""
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
        return ts, None, {"event": event, "severity": doc.get("severity", "info"), "data": doc.get("data", {})}
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
    return ts, out, None


def spec_for(device_class: str) -> ClassSpec:
    return CATALOG[device_class]  # type: ignore[index]
