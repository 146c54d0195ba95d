"""Line-oriented serial sensors (cheap MCU boards): one reading per text line.

Two formats, chosen per device profile::

    regex   T=23.5,H=61.2\\r\\n        pattern with named groups:  T=(?P<temperature>[-0-9.]+),H=...
    json    {"t": 23.5, "h": 61.2}\\n   keys map a metric to a (dotted) JSON key: temperature = "t"

A line that does not match, is not UTF-8, or lacks a value raises :class:`LineError`
with a short reason; the caller counts it and keeps reading.
"""

import json
import math
import re
from dataclasses import dataclass, field

MAX_LINE = 512


class LineError(ValueError):
    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True)
class LineFormat:
    kind: str  # "regex" or "json"
    pattern: str = ""
    keys: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind == "regex":
            try:
                compiled = re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"pattern does not compile: {exc}") from exc
            if not compiled.groupindex:
                raise ValueError("pattern needs named groups, one per metric: (?P<temperature>...)")
        elif self.kind == "json":
            if not self.keys:
                raise ValueError("json format needs keys: metric = \"json.key\"")
        else:
            raise ValueError(f"unknown line format {self.kind!r} (regex or json)")

    def parse(self, line: bytes) -> dict[str, float]:
        if len(line) > MAX_LINE:
            raise LineError("oversize", f"{len(line)} bytes")
        try:
            text = line.decode("utf-8").strip()
        except UnicodeDecodeError as exc:
            raise LineError("invalid-utf8", str(exc)) from exc
        if not text:
            raise LineError("empty")
        raw = self._regex(text) if self.kind == "regex" else self._json(text)
        values: dict[str, float] = {}
        for name, value in raw.items():
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise LineError("not-a-number", f"{name}={value!r}") from None
            if not math.isfinite(number):
                raise LineError("not-a-number", f"{name}={value!r}")
            values[name] = number
        return values

    def _regex(self, text: str) -> dict[str, object]:
        match = re.search(self.pattern, text)
        if match is None:
            raise LineError("no-match", text[:80])
        return {k: v for k, v in match.groupdict().items() if v is not None}

    def _json(self, text: str) -> dict[str, object]:
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise LineError("invalid-json", str(exc)) from exc
        values: dict[str, object] = {}
        for metric, key in self.keys.items():
            node: object = doc
            for part in key.split("."):
                if not isinstance(node, dict) or part not in node:
                    node = None
                    break
                node = node[part]
            if node is not None and not isinstance(node, bool):
                values[metric] = node
        if not values:
            raise LineError("no-values", text[:80])
        return values


def split_lines(buf: bytes) -> tuple[list[bytes], bytes]:
    """Complete lines (without terminators) and the unfinished rest; overlong rests are cut."""
    *lines, rest = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
    if len(rest) > MAX_LINE:
        lines.append(rest)
        rest = b""
    return [ln for ln in lines if ln], rest
