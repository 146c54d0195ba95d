"""Device twin: the desired state staff set for a device, what the device reports, the
commands that carry one to the other, and each device's history of going on and offline.

Desired state (per device, versioned, set through the API by a supervisor):

- ``interval_s``: poll interval, delivered as a ``set_interval`` command;
- ``disabled_points``: points read but not reported, delivered as ``disable_point`` /
  ``enable_point`` commands;
- ``thresholds``: ``{metric: {low, high, rate_per_min}}``, applied by the hub itself (a
  reading outside raises a ``threshold`` alert; a change faster than ``rate_per_min``
  between two readings a ``rate_of_change`` alert), so nothing is sent for them.

Every change is sent at once if the gateway is online, and the whole edge-side desired
state is sent again each time the gateway is born (an agent that restarted has forgotten
runtime changes). Each command is recorded with its acknowledgement; the twin is
``in_sync`` when every command of the latest round was acknowledged ``ok``.
"""

import json
import math
import secrets
import threading
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from contract.classes import CATALOG
from contract.messages import Command
from hub.registry import DeviceState
from servicekit.sqlite import open_database

_SCHEMA = """
CREATE TABLE IF NOT EXISTS desired (
    device TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    doc TEXT NOT NULL,
    set_by TEXT NOT NULL,
    set_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS commands (
    id TEXT PRIMARY KEY,
    device TEXT NOT NULL,
    gateway TEXT NOT NULL,
    round TEXT NOT NULL,
    version INTEGER NOT NULL,
    command TEXT NOT NULL,
    point TEXT,
    value REAL,
    issued_by TEXT NOT NULL,
    issued_at REAL NOT NULL,
    sent_at REAL,
    result TEXT,
    reason TEXT,
    acked_at REAL
);
CREATE INDEX IF NOT EXISTS commands_device ON commands (device, issued_at);
CREATE TABLE IF NOT EXISTS device_status (
    device TEXT NOT NULL,
    at REAL NOT NULL,
    online INTEGER NOT NULL,
    reason TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS device_status_device ON device_status (device, at);
"""


class Threshold(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    low: float | None = None
    high: float | None = None
    rate_per_min: float | None = Field(default=None, gt=0)  # largest change a minute between readings

    @model_validator(mode="after")
    def _ordered(self) -> "Threshold":
        for v in (self.low, self.high, self.rate_per_min):
            if v is not None and not math.isfinite(v):
                raise ValueError("thresholds must be finite numbers")
        if self.low is None and self.high is None and self.rate_per_min is None:
            raise ValueError("give low, high, rate_per_min or a combination")
        if self.low is not None and self.high is not None and self.low >= self.high:
            raise ValueError("low must be below high")
        return self


class DesiredPatch(BaseModel):
    """A change to a device's desired state; a field left out keeps its current value."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    interval_s: float | None = Field(default=None, ge=0.05, le=86400)
    disabled_points: list[str] | None = Field(default=None, max_length=64)
    thresholds: dict[str, Threshold] | None = Field(default=None, max_length=64)


class TwinError(ValueError):
    """A desired state that does not fit the device, with the reason to show."""


def merge(device: DeviceState, current: dict[str, Any], patch: DesiredPatch) -> dict[str, Any]:
    """The new desired document, checked against the device's class."""
    spec = CATALOG[device.device_class]
    doc = dict(current)
    given = patch.model_dump(exclude_unset=True)
    for name in list(given.get("disabled_points") or []) + list(given.get("thresholds") or {}):
        if spec.metric(name) is None:
            raise TwinError(f"{device.device_class} has no metric {name!r}")
    if "interval_s" in given:
        doc["interval_s"] = given["interval_s"]
    if "disabled_points" in given:
        doc["disabled_points"] = sorted(set(given["disabled_points"] or []))
    if "thresholds" in given:
        doc["thresholds"] = {k: {kk: vv for kk, vv in v.items() if vv is not None}
                             for k, v in (given["thresholds"] or {}).items()}
    return {k: v for k, v in doc.items() if v is not None}


def commands_for(device: DeviceState, doc: dict[str, Any], previous: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Edge-side commands that bring the device to ``doc``: all of it (``previous`` None, as
    after a birth) or only what changed since ``previous``."""
    out: list[dict[str, Any]] = []
    if "interval_s" in doc and (previous is None or previous.get("interval_s") != doc["interval_s"]):
        out.append({"command": "set_interval", "value": doc["interval_s"]})
    disabled = set(doc.get("disabled_points", []))
    before = set((previous or {}).get("disabled_points", []))
    for point in sorted(disabled - (before if previous is not None else set())):
        out.append({"command": "disable_point", "point": point})
    for point in sorted(before - disabled):
        out.append({"command": "enable_point", "point": point})
    return out


class TwinStore:
    def __init__(self, path: Path) -> None:
        self._db = open_database(path, _SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        self._db.close()

    def desired(self, device: str) -> tuple[int, dict[str, Any], str, float | None]:
        """(version, doc, set_by, set_at); version 0 and an empty doc if never set."""
        with self._lock:
            row = self._db.execute("SELECT version, doc, set_by, set_at FROM desired WHERE device = ?",
                                   (device,)).fetchone()
        return (row[0], json.loads(row[1]), row[2], row[3]) if row else (0, {}, "", None)

    def devices_with_desired(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT device FROM desired")]

    def set_desired(self, device: str, doc: dict[str, Any], actor: str) -> int:
        with self._lock:
            row = self._db.execute("SELECT version FROM desired WHERE device = ?", (device,)).fetchone()
            version = (row[0] if row else 0) + 1
            self._db.execute("INSERT OR REPLACE INTO desired VALUES (?, ?, ?, ?, ?)",
                             (device, version, json.dumps(doc, sort_keys=True), actor, time.time()))
        return version

    def issue(self, device: DeviceState, version: int, commands: list[dict[str, Any]], actor: str) -> list[Command]:
        """Record one round of commands; return them as contract messages, to be sent."""
        round_id, now = secrets.token_hex(4), time.time()
        out = []
        with self._lock:
            for n, c in enumerate(commands):
                cmd = Command(id=f"tw-{round_id}-{n}", ts=now, device=device.id, **c)
                out.append(cmd)
                self._db.execute("INSERT INTO commands (id, device, gateway, round, version, command, point, value, "
                                 "issued_by, issued_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                 (cmd.id, device.id, device.gateway, round_id, version, cmd.command, cmd.point,
                                  cmd.value, actor, now))
        return out

    def sent(self, command_id: str) -> None:
        with self._lock:
            self._db.execute("UPDATE commands SET sent_at = ? WHERE id = ?", (time.time(), command_id))

    def acked(self, command_id: str, result: str, reason: str, at: float) -> bool:
        """Record an acknowledgement; False if it is not one of the twin's commands."""
        with self._lock:
            return self._db.execute("UPDATE commands SET result = ?, reason = ?, acked_at = ? WHERE id = ?",
                                    (result, reason, at, command_id)).rowcount > 0

    def commands(self, device: str, limit: int = 50) -> list[dict[str, Any]]:
        with self._lock:
            cur = self._db.execute("SELECT id, round, version, command, point, value, issued_by, issued_at, sent_at, "
                                   "result, reason, acked_at FROM commands WHERE device = ? "
                                   "ORDER BY issued_at DESC, id DESC LIMIT ?", (device, limit))
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def status_change(self, device: str, at: float, online: bool, reason: str) -> None:
        with self._lock:
            self._db.execute("INSERT INTO device_status VALUES (?, ?, ?, ?)", (device, at, int(online), reason))

    def last_status(self) -> dict[str, bool]:
        with self._lock:
            rows = self._db.execute("SELECT device, online FROM device_status d WHERE at = "
                                    "(SELECT MAX(at) FROM device_status WHERE device = d.device)").fetchall()
        return {device: bool(online) for device, online in rows}

    def status_history(self, device: str, limit: int = 100) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT at, online, reason FROM device_status WHERE device = ? "
                                    "ORDER BY at DESC LIMIT ?", (device, limit)).fetchall()
        return [{"at": at, "online": bool(online), "reason": reason} for at, online, reason in rows]


def sync_state(commands: list[dict[str, Any]]) -> str:
    """``in_sync``, ``pending`` or ``refused``, from the latest round of commands (newest first)."""
    latest = [c for c in commands if c["round"] == commands[0]["round"]] if commands else []
    if any(c["result"] in ("refused", "error") for c in latest):
        return "refused"
    return "in_sync" if all(c["result"] == "ok" for c in latest) else "pending"
