"""Work orders: what property staff (and registered volunteer residents) actually do.

An alert becomes a work order (one per incident: a repeat of the same device, metric and
kind while its order is still open is noted on that order); so does a resident's request
through the same API. Lifecycle::

    open --claim/assign--> claimed --start--> in_progress --resolve--> resolved --verify--> verified
      ^                                                                    |
      +--------------------------- reopen (supervisor) <-------------------+  (reopened -> claim/assign)

- ``claim`` (抢单): staff take an open order themselves; volunteers may claim orders
  whose category allows volunteers. ``assign``: a supervisor gives it to someone.
- ``start`` and ``resolve`` are the assignee's (or a supervisor's); ``resolve`` needs a note.
- ``verify`` and ``reopen`` are a supervisor's; ``reopen`` needs a note.
- ``comment``: anyone who may see the order.

Each category has an SLA (minutes to resolve). An order still unresolved past its due
time is escalated once: marked, logged, counted, and shown first on the board.
Every change is an event on the order (who, when, from which status to which, note):
the full audit trail.
"""

import math
import threading
import time
from pathlib import Path
from typing import Any

from hub.accounts import Principal
from zoneinfo import ZoneInfo

from hub.categories import CATEGORIES
from hub.workorders.service_hours import due_at
from servicekit.sqlite import open_database

_SCHEMA = """
CREATE TABLE IF NOT EXISTS work_orders (
    id INTEGER PRIMARY KEY,
    created_at REAL NOT NULL,
    source TEXT NOT NULL,
    alert_key TEXT,
    category TEXT NOT NULL,
    title TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    building TEXT,
    device TEXT,
    severity TEXT NOT NULL,
    status TEXT NOT NULL,
    assignee TEXT,
    created_by TEXT NOT NULL,
    due_at REAL NOT NULL,
    escalated_at REAL,
    resolved_at REAL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS work_orders_status ON work_orders (status, due_at);
CREATE INDEX IF NOT EXISTS work_orders_alert ON work_orders (alert_key, status);
CREATE TABLE IF NOT EXISTS work_order_events (
    id INTEGER PRIMARY KEY,
    order_id INTEGER NOT NULL,
    at REAL NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    from_status TEXT,
    to_status TEXT,
    note TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS work_order_events_order ON work_order_events (order_id, id);
"""

ACTIVE = ("open", "claimed", "in_progress", "reopened")
STATUSES = (*ACTIVE, "resolved", "verified")


class WorkOrderError(ValueError):
    """An action that is not allowed now; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.status = status


# action -> (statuses it applies to, status it leads to; None: unchanged)
_TRANSITIONS: dict[str, tuple[tuple[str, ...], str | None]] = {
    "claim": (("open", "reopened"), "claimed"),
    "assign": (("open", "claimed", "in_progress", "reopened"), "claimed"),
    "start": (("claimed",), "in_progress"),
    "resolve": (("claimed", "in_progress"), "resolved"),
    "verify": (("resolved",), "verified"),
    "reopen": (("resolved", "verified"), "reopened"),
    "comment": (STATUSES, None),
}
ACTIONS = tuple(_TRANSITIONS)
# What a requester (a resident, through hub.residents) may note on an order.
_REQUESTER_NOTES = ("report_merged", "info_added", "photo_added", "rated")


class WorkOrders:
    def __init__(self, path: Path, timezone: str = "Asia/Shanghai") -> None:
        self._tz = ZoneInfo(timezone)  # the community's local time: what each category's service hours mean
        self._db = open_database(path, _SCHEMA)
        self._lock = threading.Lock()
        self.version = 0  # bumped on every change: live pages watch it

    def close(self) -> None:
        self._db.close()

    def create(self, *, source: str, category: str, title: str, description: str = "", building: str | None = None,
               device: str | None = None, severity: str = "warning", actor: str, alert_key: str | None = None,
               now: float | None = None) -> int:
        if category not in CATEGORIES:
            raise WorkOrderError(f"unknown category {category!r} (known: {', '.join(CATEGORIES)})", 422)
        now = time.time() if now is None else now
        spec = CATEGORIES[category]
        due = due_at(now, spec.sla_minutes, spec.hours, self._tz)  # counted in the category's service hours
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO work_orders (created_at, source, alert_key, category, title, description, building, "
                "device, severity, status, created_by, due_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'open', ?, ?, ?)",
                (now, source, alert_key, category, title, description, building, device, severity, actor, due, now))
            order_id = int(cur.lastrowid or 0)
            self._event(order_id, now, actor, "create", None, "open", description)
        self.version += 1
        return order_id

    def from_alert(self, *, alert_key: str, category: str, title: str, building: str, device: str, severity: str,
                   detail: str, now: float | None = None) -> tuple[int, bool]:
        """The order for this incident: a new one, or the still-active one it repeats (noted). (id, created)"""
        with self._lock:
            row = self._db.execute("SELECT id FROM work_orders WHERE alert_key = ? AND status IN "
                                   f"({','.join('?' * len(ACTIVE))}) ORDER BY id DESC LIMIT 1",
                                   (alert_key, *ACTIVE)).fetchone()
            if row is not None:
                self._event(row[0], time.time() if now is None else now, "hub:rules", "alert_repeated", None, None,
                            detail)
        if row is not None:
            self.version += 1
            return int(row[0]), False
        return self.create(source="alert", category=category, title=title, description=detail, building=building,
                           device=device, severity=severity, actor="hub:rules", alert_key=alert_key, now=now), True

    def act(self, order_id: int, action: str, who: Principal, *, note: str = "", assignee: str | None = None,
            now: float | None = None) -> dict[str, Any]:
        """Apply ``action`` as ``who``; WorkOrderError saying why not."""
        if action not in _TRANSITIONS:
            raise WorkOrderError(f"unknown action {action!r} (known: {', '.join(ACTIONS)})", 422)
        now = time.time() if now is None else now
        with self._lock:
            order = self._get(order_id)
            allowed_from, to = _TRANSITIONS[action]
            status = order["status"]
            self._check_role(order, action, who, note, assignee)
            if status not in allowed_from:
                raise WorkOrderError(f"cannot {action} a work order that is {status}")
            new_assignee = {"claim": who.name, "assign": assignee}.get(action, order["assignee"])
            to = to or status
            resolved_at = now if to == "resolved" else (None if to == "reopened" else order["resolved_at"])
            self._db.execute("UPDATE work_orders SET status = ?, assignee = ?, resolved_at = ?, updated_at = ? "
                             "WHERE id = ?", (to, new_assignee, resolved_at, now, order_id))
            detail = note if action != "assign" else f"→ {assignee}" + (f": {note}" if note else "")
            self._event(order_id, now, who.actor, action, status, to, detail)
        self.version += 1
        return self.get(order_id)

    def requester_note(self, order_id: int, action: str, actor: str, note: str, now: float | None = None) -> None:
        """Note on the order what its requester did (another report merged into it, information
        added, a rating): an event only, its status unchanged. ``actor`` names the requester
        (e.g. ``resident:XH-20261202-0042``), never a person."""
        if action not in _REQUESTER_NOTES:
            raise WorkOrderError(f"unknown requester note {action!r} (known: {', '.join(_REQUESTER_NOTES)})", 422)
        now = time.time() if now is None else now
        with self._lock:
            self._get(order_id)
            self._db.execute("UPDATE work_orders SET updated_at = ? WHERE id = ?", (now, order_id))
            self._event(order_id, now, actor, action, None, None, note)
        self.version += 1

    def requester_reopen(self, order_id: int, actor: str, note: str, *, within_s: float,
                         now: float | None = None) -> dict[str, Any]:
        """The requester says it is not fixed: a resolved (or verified) order resolved less than
        ``within_s`` ago is reopened (a supervisor's ``reopen`` has no such limit)."""
        if not note.strip():
            raise WorkOrderError("reopen needs a note saying why", 422)
        now = time.time() if now is None else now
        with self._lock:
            order = self._get(order_id)
            if order["status"] not in ("resolved", "verified"):
                raise WorkOrderError(f"cannot reopen a work order that is {order['status']}")
            if order["resolved_at"] is None or now - order["resolved_at"] > within_s:
                raise WorkOrderError("it was resolved too long ago to reopen: report it again", 409)
            self._db.execute("UPDATE work_orders SET status = 'reopened', resolved_at = NULL, updated_at = ? "
                             "WHERE id = ?", (now, order_id))
            self._event(order_id, now, actor, "reopen", order["status"], "reopened", note)
        self.version += 1
        return self.get(order_id)

    def _check_role(self, order: dict[str, Any], action: str, who: Principal, note: str,
                    assignee: str | None) -> None:
        supervisor = who.has("supervisor")
        if action in ("assign", "verify", "reopen") and not supervisor:
            raise WorkOrderError(f"{action} needs the supervisor role", 403)
        if action == "claim":
            if who.role == "volunteer" and not CATEGORIES[order["category"]].volunteers:
                raise WorkOrderError(f"volunteers may not claim {order['category']} work orders", 403)
        if action in ("start", "resolve") and not supervisor and order["assignee"] != who.name:
            raise WorkOrderError(f"only the assignee ({order['assignee']}) or a supervisor may {action} it", 403)
        if action == "comment" and who.role == "volunteer" and order["assignee"] != who.name:
            raise WorkOrderError("volunteers may comment only on their own work orders", 403)
        if action in ("resolve", "reopen", "comment") and not note.strip():
            raise WorkOrderError(f"{action} needs a note saying what was done or why", 422)
        if action == "assign" and not assignee:
            raise WorkOrderError("assign needs an assignee", 422)

    def escalate_overdue(self, now: float | None = None) -> list[dict[str, Any]]:
        """Mark active orders past their SLA (once each); return them."""
        now = time.time() if now is None else now
        with self._lock:
            rows = self._db.execute(f"SELECT id FROM work_orders WHERE status IN ({','.join('?' * len(ACTIVE))}) "
                                    "AND due_at < ? AND escalated_at IS NULL", (*ACTIVE, now)).fetchall()
            for (order_id,) in rows:
                self._db.execute("UPDATE work_orders SET escalated_at = ?, updated_at = ? WHERE id = ?",
                                 (now, now, order_id))
                self._event(order_id, now, "hub:sla", "escalate", None, None, "past its SLA, unresolved")
        if rows:
            self.version += 1
        return [self.get(order_id) for (order_id,) in rows]

    def get(self, order_id: int) -> dict[str, Any]:
        with self._lock:
            order = self._get(order_id)
            cur = self._db.execute("SELECT at, actor, action, from_status, to_status, note FROM work_order_events "
                                   "WHERE order_id = ? ORDER BY id", (order_id,))
            order["events"] = [dict(zip(("at", "actor", "action", "from", "to", "note"), r, strict=True))
                               for r in cur.fetchall()]
        return order

    def find(self, status: str | None = None, assignee: str | None = None, building: str | None = None,
             volunteer_only: bool = False, limit: int = 200) -> list[dict[str, Any]]:
        sql, args = "SELECT * FROM work_orders WHERE 1 = 1", []
        for column, value in (("status", status), ("assignee", assignee), ("building", building)):
            if value is not None:
                sql += f" AND {column} = ?"
                args.append(value)
        if volunteer_only:
            ok = [c for c, spec in CATEGORIES.items() if spec.volunteers]
            sql += f" AND category IN ({','.join('?' * len(ok))})"
            args.extend(ok)
        sql += " ORDER BY escalated_at IS NULL, due_at LIMIT ?"
        with self._lock:
            cur = self._db.execute(sql, (*args, limit))
            names = [d[0] for d in cur.description]
            return [self._decorate(dict(zip(names, r, strict=True))) for r in cur.fetchall()]

    def counts(self, since: float, until: float = math.inf) -> dict[str, Any]:
        """Opened, closed, overdue (now) and the median minutes to resolve in [since, until)
        (for summaries)."""
        with self._lock:
            opened = self._db.execute("SELECT COUNT(*) FROM work_orders WHERE created_at >= ? AND created_at < ?",
                                      (since, until)).fetchone()[0]
            durations = sorted(r[0] for r in self._db.execute(
                "SELECT resolved_at - created_at FROM work_orders WHERE resolved_at >= ? AND resolved_at < ?",
                (since, until)))
            overdue = self._db.execute(f"SELECT COUNT(*) FROM work_orders WHERE status IN ({','.join('?' * len(ACTIVE))})"
                                       " AND due_at < ?", (*ACTIVE, time.time())).fetchone()[0]
        median = durations[len(durations) // 2] / 60 if durations else None
        return {"opened": opened, "resolved": len(durations), "overdue": overdue, "median_minutes_to_resolve": median}

    def _get(self, order_id: int) -> dict[str, Any]:
        cur = self._db.execute("SELECT * FROM work_orders WHERE id = ?", (order_id,))
        row = cur.fetchone()
        if row is None:
            raise WorkOrderError(f"no work order {order_id}", 404)
        return self._decorate(dict(zip([d[0] for d in cur.description], row, strict=True)))

    @staticmethod
    def _decorate(order: dict[str, Any]) -> dict[str, Any]:
        spec = CATEGORIES.get(order["category"])
        order["category_zh"], order["category_en"] = (spec.label_zh, spec.label_en) if spec else ("", "")
        order["overdue"] = order["status"] in ACTIVE and order["due_at"] < time.time()
        return order

    def _event(self, order_id: int, at: float, actor: str, action: str, from_status: str | None,
               to_status: str | None, note: str) -> None:
        self._db.execute("INSERT INTO work_order_events (order_id, at, actor, action, from_status, to_status, note) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?)", (order_id, at, actor, action, from_status, to_status, note))

