"""The residents' requests' own tables: requests, what residents add to them, and photos.

``requests``: one row per report (ticket unique; identity and PIN kept as keyed hashes,
hub/residents/requests/identity.py). ``request_additions``: information or a photo a
resident added later. ``request_photos``: cleaned JPEGs (photos.py), of a request or of a
work order (a volunteer's resolve). ``request_ticket_days``: each local day's last ticket
number. Every write of a request is one transaction: nothing is stored half.
"""

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hub.residents.requests.photos import Photo
from servicekit.sqlite import open_database

_SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY,
    ticket TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL,
    channel TEXT NOT NULL,
    entered_by TEXT NOT NULL DEFAULT '',
    text TEXT NOT NULL,
    place TEXT NOT NULL,
    contact_pref TEXT NOT NULL,
    household_hash TEXT,
    phone_hash TEXT,
    pin_hash TEXT,
    category TEXT NOT NULL,
    urgency TEXT NOT NULL,
    confidence REAL NOT NULL,
    reason TEXT NOT NULL DEFAULT '[]',
    triage_state TEXT NOT NULL,
    work_order_id INTEGER,
    merged INTEGER NOT NULL DEFAULT 0,
    rating INTEGER,
    rating_comment TEXT,
    rated_at REAL,
    anonymised_at REAL
);
CREATE INDEX IF NOT EXISTS requests_recent ON requests (category, created_at);
CREATE INDEX IF NOT EXISTS requests_order ON requests (work_order_id);
CREATE INDEX IF NOT EXISTS requests_queue ON requests (triage_state, created_at);
CREATE TABLE IF NOT EXISTS request_additions (
    id INTEGER PRIMARY KEY,
    request_id INTEGER NOT NULL,
    at REAL NOT NULL,
    text TEXT NOT NULL DEFAULT '',
    photo_id INTEGER
);
CREATE INDEX IF NOT EXISTS request_additions_request ON request_additions (request_id, id);
CREATE TABLE IF NOT EXISTS request_photos (
    id INTEGER PRIMARY KEY,
    created_at REAL NOT NULL,
    request_id INTEGER,
    work_order_id INTEGER,
    added_by TEXT NOT NULL,
    mime TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS request_photos_request ON request_photos (request_id);
CREATE INDEX IF NOT EXISTS request_photos_order ON request_photos (work_order_id);
CREATE TABLE IF NOT EXISTS request_ticket_days (day TEXT PRIMARY KEY, last INTEGER NOT NULL);
"""

_COLUMNS = ("ticket", "created_at", "channel", "entered_by", "text", "place", "contact_pref", "household_hash",
            "phone_hash", "pin_hash", "category", "urgency", "confidence", "reason", "triage_state",
            "work_order_id", "merged")


@dataclass(frozen=True)
class StoredRequest:
    """A request as inserted (its ticket and PIN hash beside it)."""

    created_at: float
    channel: str
    entered_by: str
    text: str
    place: str
    contact_pref: str
    household_hash: str | None
    phone_hash: str | None
    category: str
    urgency: str
    confidence: float
    reason: tuple[str, ...]
    triage_state: str
    work_order_id: int | None
    merged: bool


class RequestStore:
    def __init__(self, path: Path) -> None:
        self._db = open_database(path, _SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        self._db.close()

    def next_ticket(self, prefix: str, day: str) -> str:
        """Reserve the day's next ticket number (its own small transaction: a request refused or
        lost after this only leaves a gap in the numbers)."""
        with self._lock:
            n = self._db.execute("INSERT INTO request_ticket_days (day, last) VALUES (?, 1) "
                                 "ON CONFLICT (day) DO UPDATE SET last = last + 1 RETURNING last", (day,)).fetchone()[0]
        return f"{prefix}-{day}-{n:04d}"

    def add(self, req: StoredRequest, *, ticket: str, pin_hash: str, photo: Photo | None) -> int:
        """Insert a request with its PIN hash and photo, in one transaction; its id."""
        values = (ticket, req.created_at, req.channel, req.entered_by, req.text, req.place, req.contact_pref,
                  req.household_hash, req.phone_hash, pin_hash, req.category, req.urgency, req.confidence,
                  json.dumps(list(req.reason), ensure_ascii=False), req.triage_state, req.work_order_id,
                  int(req.merged))
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cur = self._db.execute(f"INSERT INTO requests ({', '.join(_COLUMNS)}) "
                                       f"VALUES ({', '.join('?' * len(_COLUMNS))})", values)
                request_id = int(cur.lastrowid or 0)
                if photo is not None:
                    self._insert_photo(photo, request_id, None, "resident", req.created_at)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return request_id

    def by_ticket(self, ticket: str) -> dict[str, Any] | None:
        return self._one("SELECT * FROM requests WHERE ticket = ?", (ticket,))

    def get(self, request_id: int) -> dict[str, Any] | None:
        return self._one("SELECT * FROM requests WHERE id = ?", (request_id,))

    def _one(self, sql: str, args: tuple[Any, ...]) -> dict[str, Any] | None:
        with self._lock:
            cur = self._db.execute(sql, args)
            row = cur.fetchone()
            return None if row is None else self._decode(dict(zip([d[0] for d in cur.description], row, strict=True)))

    @staticmethod
    def _decode(row: dict[str, Any]) -> dict[str, Any]:
        row["reason"] = json.loads(row["reason"])
        row["merged"] = bool(row["merged"])
        return row

    def recent_with_orders(self, category: str, since: float) -> list[dict[str, Any]]:
        """Requests of ``category`` since ``since`` that are on a work order (duplicate candidates)."""
        with self._lock:
            cur = self._db.execute("SELECT id, created_at, place, category, text, work_order_id FROM requests "
                                   "WHERE category = ? AND created_at >= ? AND work_order_id IS NOT NULL "
                                   "AND anonymised_at IS NULL ORDER BY id", (category, since))
            names = [d[0] for d in cur.description]
            return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    def on_order(self, order_id: int) -> list[dict[str, Any]]:
        """The requests (id, ticket) following a work order."""
        with self._lock:
            return [{"id": r[0], "ticket": r[1]} for r in self._db.execute(
                "SELECT id, ticket FROM requests WHERE work_order_id = ? ORDER BY id", (order_id,))]

    def queued(self, limit: int = 200) -> list[dict[str, Any]]:
        with self._lock:
            cur = self._db.execute("SELECT * FROM requests WHERE triage_state = 'queued' ORDER BY created_at "
                                   "LIMIT ?", (limit,))
            names = [d[0] for d in cur.description]
            return [self._decode(dict(zip(names, r, strict=True))) for r in cur.fetchall()]

    def set_triage(self, request_id: int, *, category: str, urgency: str, state: str, work_order_id: int | None,
                   merged: bool, only_if_state: str | None = None) -> bool:
        """Record a triage decision (a supervisor's confirmation); False when the request is no longer
        in ``only_if_state`` (someone else confirmed it first)."""
        sql = ("UPDATE requests SET category = ?, urgency = ?, triage_state = ?, work_order_id = ?, merged = ? "
               "WHERE id = ?")
        args: tuple[Any, ...] = (category, urgency, state, work_order_id, int(merged), request_id)
        if only_if_state is not None:
            sql += " AND triage_state = ?"
            args += (only_if_state,)
        with self._lock:
            return self._db.execute(sql, args).rowcount == 1

    def add_info(self, request_id: int, text: str, photo: Photo | None, at: float) -> int:
        """A resident's later addition (text and/or photo), one transaction; its id."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                photo_id = self._insert_photo(photo, request_id, None, "resident", at) if photo else None
                cur = self._db.execute("INSERT INTO request_additions (request_id, at, text, photo_id) "
                                       "VALUES (?, ?, ?, ?)", (request_id, at, text, photo_id))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return int(cur.lastrowid or 0)

    def additions(self, request_id: int) -> list[dict[str, Any]]:
        with self._lock:
            return [{"at": r[0], "text": r[1], "photo": r[2] is not None} for r in self._db.execute(
                "SELECT at, text, photo_id FROM request_additions WHERE request_id = ? ORDER BY id", (request_id,))]

    def rate(self, request_id: int, stars: int, comment: str, at: float) -> bool:
        """Once only: False if already rated."""
        with self._lock:
            return self._db.execute("UPDATE requests SET rating = ?, rating_comment = ?, rated_at = ? "
                                    "WHERE id = ? AND rating IS NULL", (stars, comment, at, request_id)).rowcount == 1

    def add_order_photo(self, order_id: int, photo: Photo, added_by: str, at: float) -> int:
        with self._lock:
            return self._insert_photo(photo, None, order_id, added_by, at)

    def _insert_photo(self, photo: Photo, request_id: int | None, order_id: int | None, added_by: str,
                      at: float) -> int:
        cur = self._db.execute("INSERT INTO request_photos (created_at, request_id, work_order_id, added_by, mime, "
                               "width, height, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                               (at, request_id, order_id, added_by, photo.mime, photo.width, photo.height, photo.data))
        return int(cur.lastrowid or 0)

    def photos(self, *, request_ids: tuple[int, ...] = (), order_id: int | None = None) -> list[dict[str, Any]]:
        """Photo ids and sizes (not the bytes) of these requests and/or this work order."""
        ids = list(request_ids)
        sql = ("SELECT id, created_at, request_id, work_order_id, added_by, width, height FROM request_photos "
               f"WHERE request_id IN ({','.join('?' * len(ids)) or 'NULL'}) OR work_order_id = ? ORDER BY id")
        with self._lock:
            cur = self._db.execute(sql, (*ids, order_id))
            names = [d[0] for d in cur.description]
            return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    def photo(self, photo_id: int) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT mime, data, request_id, work_order_id FROM request_photos WHERE id = ?",
                                   (photo_id,)).fetchone()
        return None if row is None else {"mime": row[0], "data": row[1], "request_id": row[2],
                                         "work_order_id": row[3]}

    def closable(self, before: float) -> list[dict[str, Any]]:
        """Requests created before ``before`` not yet anonymised: (id, work_order_id)."""
        with self._lock:
            return [{"id": r[0], "work_order_id": r[1]} for r in self._db.execute(
                "SELECT id, work_order_id FROM requests WHERE created_at < ? AND anonymised_at IS NULL "
                "AND triage_state != 'queued' ORDER BY id LIMIT 10000", (before,))]

    def anonymise(self, request_ids: list[int], at: float | None = None) -> int:
        """Clear the personal fields of these requests (text, identity, PIN, photos, additions,
        rating comment); category, place and times are kept. One transaction."""
        if not request_ids:
            return 0
        at = time.time() if at is None else at
        marks = ",".join("?" * len(request_ids))
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                n = self._db.execute(
                    "UPDATE requests SET text = '', entered_by = '', household_hash = NULL, phone_hash = NULL, "
                    f"pin_hash = NULL, reason = '[]', rating_comment = NULL, anonymised_at = ? WHERE id IN ({marks})",
                    (at, *request_ids)).rowcount
                self._db.execute(f"DELETE FROM request_photos WHERE request_id IN ({marks})", request_ids)
                self._db.execute(f"DELETE FROM request_additions WHERE request_id IN ({marks})", request_ids)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return n

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {"requests": self._db.execute("SELECT COUNT(*) FROM requests").fetchone()[0],
                    "queued": self._db.execute("SELECT COUNT(*) FROM requests WHERE triage_state = 'queued'")
                    .fetchone()[0]}
