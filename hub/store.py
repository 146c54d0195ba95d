"""The hub's embedded SQLite store: telemetry, events, dead letters, agent runs, counters,
command acks, and their retention (roll-ups to 1-minute and 1-hour aggregates, expiry).

One writer connection used from a worker thread (batched transactions), one reader
connection for the API; WAL lets them run side by side. Other components keep their own
tables in the same database file through their own connections: alerts (hub.alerting),
scored windows (hub.scoring), summaries (hub.summaries.store), work orders, the twin,
accounts and the city's items.
"""

import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contract.messages import QUALITY_LEVELS
from hub.dead_letters import SCHEMA as DEAD_LETTER_SCHEMA
from hub.dead_letters import DeadLetter, DeadLetterShelf, DeadLetterStats
from hub.settings import DeadLetterSettings
from servicekit.sqlite import open_database

_SCHEMA = """
CREATE TABLE IF NOT EXISTS telemetry (
    ts REAL NOT NULL, device TEXT NOT NULL, metric TEXT NOT NULL, value REAL NOT NULL,
    gateway TEXT NOT NULL, seq INTEGER NOT NULL, hist INTEGER NOT NULL DEFAULT 0, boot TEXT NOT NULL DEFAULT '',
    quality TEXT NOT NULL DEFAULT ''  -- '' when good, else the reason (contract.messages.QUALITY_LEVELS)
);
CREATE INDEX IF NOT EXISTS telemetry_by_device ON telemetry (device, ts);
CREATE TABLE IF NOT EXISTS events (
    ts REAL NOT NULL, device TEXT NOT NULL, gateway TEXT NOT NULL, event TEXT NOT NULL,
    severity TEXT NOT NULL, data TEXT NOT NULL, boot TEXT NOT NULL DEFAULT '', seq INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS gateway_runs (
    gateway TEXT NOT NULL, boot TEXT NOT NULL, software TEXT NOT NULL, born_at REAL NOT NULL,
    PRIMARY KEY (gateway, boot)
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS telemetry_rollup (
    resolution INTEGER NOT NULL, bucket REAL NOT NULL, device TEXT NOT NULL, metric TEXT NOT NULL,
    count INTEGER NOT NULL, mean REAL NOT NULL, min REAL NOT NULL, max REAL NOT NULL,
    PRIMARY KEY (resolution, device, metric, bucket)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rollup_done (resolution INTEGER PRIMARY KEY, rowid_done INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS command_acks (
    id TEXT NOT NULL, gateway TEXT NOT NULL, received_at REAL NOT NULL, result TEXT NOT NULL, reason TEXT NOT NULL
);
"""


# A message is stored once: (gateway, boot, seq) is unique among telemetry (per metric row)
# and among events. The ingest's in-memory windows drop most repeats; these indexes are the
# backstop that holds across hub restarts (a message committed whose PUBACK was lost is
# delivered again after the restart). Rows written before the boot column existed are exempt.
_UNIQUE = """
CREATE UNIQUE INDEX IF NOT EXISTS telemetry_once ON telemetry (gateway, boot, seq, metric) WHERE boot != '';
CREATE UNIQUE INDEX IF NOT EXISTS events_once ON events (gateway, boot, seq) WHERE boot != '';
"""


@dataclass(frozen=True, slots=True)
class TelemetryRow:
    ts: float
    device: str
    gateway: str
    seq: int
    hist: bool
    metrics: tuple[tuple[str, float], ...]
    boot: str = ""
    origin: str = "announced"  # counted as stored_<origin>: from an agent run announced by a birth, or not
    quality: tuple[tuple[str, str], ...] = ()  # (metric, reason) of the points that are not good


_INSERT_TELEMETRY = ("INSERT OR IGNORE INTO telemetry (ts, device, metric, value, gateway, seq, hist, boot, quality) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")


def _reason(row: TelemetryRow, metric: str) -> str:
    """The metric's quality reason in ``row``; '' for good (most rows: no dict is built)."""
    if not row.quality:
        return ""
    for name, reason in row.quality:
        if name == metric:
            return reason
    return ""


@dataclass(frozen=True, slots=True)
class Written:
    """What a write stored: new messages, and repeats the unique indexes refused."""

    telemetry: int
    telemetry_repeats: int
    events: int
    event_repeats: int
    corrections: dict[str, int]  # counter changes the write made to account for the repeats


__all__ = ["DeadLetter", "HubStore", "TelemetryRow", "Written"]


class HubStore:
    def __init__(self, path: Path, dead_letters: DeadLetterSettings = DeadLetterSettings()) -> None:
        self._writer = open_database(path, _SCHEMA + DEAD_LETTER_SCHEMA)
        _migrate(self._writer)
        self._dead = DeadLetterShelf(self._writer, dead_letters)
        self._writer.executescript(_UNIQUE)
        self._reader = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._reader.row_factory = sqlite3.Row
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()

    def close(self) -> None:
        self._writer.close()
        self._reader.close()

    # -- writes (called from a worker thread, one transaction per batch) ----------

    def write(self, telemetry: Sequence[TelemetryRow], events: Sequence[tuple[Any, ...]],
              dead: Sequence[DeadLetter], counters: dict[str, int] | None = None,
              births: Sequence[tuple[str, str, str, float]] = ()) -> Written:
        """One transaction: the rows, and the counter changes that describe them.

        ``events`` rows are (ts, device, gateway, event, severity, data, boot, seq). Repeats
        of stored messages are skipped, and the counters ``stored``/``events_stored`` are
        corrected by what was skipped (counted as ``duplicates``) in the same transaction.
        """
        counters = dict(counters or {})
        with self._write_lock:
            db = self._writer
            db.execute("BEGIN")
            try:
                new_t = new_e = 0
                repeats_by_origin: dict[str, int] = {}
                for origin in {t.origin for t in telemetry}:
                    # A message's rows are all new or all repeats: its first row decides.
                    group = [t for t in telemetry if t.origin == origin]
                    before = db.total_changes
                    db.executemany(_INSERT_TELEMETRY,
                                   ((t.ts, t.device, *t.metrics[0], t.gateway, t.seq, int(t.hist), t.boot,
                                     _reason(t, t.metrics[0][0]) if t.quality else "") for t in group))
                    added = db.total_changes - before
                    new_t += added
                    if added < len(group):
                        repeats_by_origin[origin] = len(group) - added
                if telemetry:
                    rest = [t for t in telemetry if len(t.metrics) > 1]
                    if rest:
                        db.executemany(_INSERT_TELEMETRY,
                                       ((t.ts, t.device, m, v, t.gateway, t.seq, int(t.hist), t.boot,
                                         _reason(t, m) if t.quality else "") for t in rest for m, v in t.metrics[1:]))
                if events:
                    before = db.total_changes
                    db.executemany("INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?)", events)
                    new_e = db.total_changes - before
                before_counters = dict(counters)
                written = Written(new_t, len(telemetry) - new_t, new_e, len(events) - new_e, {})
                repeats = written.telemetry_repeats + written.event_repeats
                for origin, n in repeats_by_origin.items():
                    counters[f"stored_{origin}"] = counters.get(f"stored_{origin}", 0) - n
                if repeats:
                    counters["stored"] = counters.get("stored", 0) - written.telemetry_repeats
                    counters["events_stored"] = counters.get("events_stored", 0) - written.event_repeats
                    counters["duplicates"] = counters.get("duplicates", 0) + repeats
                if dead:
                    self._dead.write(db, dead)
                if births:
                    db.executemany("INSERT OR IGNORE INTO gateway_runs VALUES (?, ?, ?, ?)", births)
                if counters:
                    db.executemany("INSERT INTO counters VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = value + ?",
                                   ((k, v, v) for k, v in counters.items() if v))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        written.corrections.update({k: v - before_counters.get(k, 0) for k, v in counters.items()
                                    if v != before_counters.get(k, 0)})
        return written

    # -- retention ---------------------------------------------------------------------

    def roll_up(self, resolution_s: int, batch: int = 200_000) -> int:
        """Bring the ``resolution_s`` aggregates up to date with the raw rows stored since the
        last call (by insertion, so rows replayed late are included), in steps of at most
        ``batch`` rows. Every bucket those rows touch is recomputed from the raw rows, so the
        result is exact however late a row arrives. Returns the buckets written."""
        with self._write_lock:
            db = self._writer
            row = db.execute("SELECT rowid_done FROM rollup_done WHERE resolution = ?", (resolution_s,)).fetchone()
            done = row[0] if row else 0
            upto = db.execute("SELECT MAX(rowid) FROM (SELECT rowid FROM telemetry WHERE rowid > ? ORDER BY rowid "
                              "LIMIT ?)", (done, batch)).fetchone()[0]
            if upto is None:
                return 0
            db.execute("BEGIN")
            try:
                before = db.total_changes
                db.execute(
                    "INSERT OR REPLACE INTO telemetry_rollup "
                    "SELECT ?, t.bucket, t.device, t.metric, COUNT(*), AVG(r.value), MIN(r.value), MAX(r.value) "
                    "FROM (SELECT DISTINCT CAST(ts / ? AS INTEGER) * ? AS bucket, device, metric FROM telemetry "
                    "      WHERE rowid > ? AND rowid <= ?) AS t "
                    "JOIN telemetry AS r ON r.device = t.device AND r.metric = t.metric "
                    "     AND r.ts >= t.bucket AND r.ts < t.bucket + ? "
                    "GROUP BY t.bucket, t.device, t.metric",
                    (resolution_s, resolution_s, resolution_s, done, upto, resolution_s))
                written = db.total_changes - before
                db.execute("INSERT INTO rollup_done VALUES (?, ?) ON CONFLICT(resolution) DO UPDATE SET rowid_done = ?",
                           (resolution_s, upto, upto))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return written

    def expire(self, raw_before: float, rollup_before: dict[int, float], dead_before: float) -> dict[str, int]:
        """Delete what is past its retention: raw telemetry and events, roll-ups per
        resolution, dead letters (scored windows are hub.scoring's). Raw rows are deleted
        only once every resolution has them."""
        deleted: dict[str, int] = {}
        with self._write_lock:
            db = self._writer
            marks = dict(db.execute("SELECT resolution, rowid_done FROM rollup_done"))
            rolled = min((marks.get(r, 0) for r in rollup_before), default=2**62)
            for name, sql, args in (
                ("telemetry", "DELETE FROM telemetry WHERE ts < ? AND rowid <= ?", (raw_before, rolled)),
                ("events", "DELETE FROM events WHERE ts < ?", (raw_before,)),
                ("dead_letters", "DELETE FROM dead_letters WHERE received_at < ?", (dead_before,)),
                # Agent runs announced before raw retention, beyond the newest 10,000 the hub
                # restores at start (their readings are gone; nothing can be attributed to them).
                ("gateway_runs", "DELETE FROM gateway_runs WHERE born_at < ? AND rowid NOT IN "
                                 "(SELECT rowid FROM gateway_runs ORDER BY born_at DESC LIMIT 10000)", (raw_before,)),
            ):
                deleted[name] = db.execute(sql, args).rowcount
            for resolution, before in rollup_before.items():
                deleted[f"expired_rollup_{resolution}s"] = db.execute(
                    "DELETE FROM telemetry_rollup WHERE resolution = ? AND bucket < ?", (resolution, before)).rowcount
            if deleted["dead_letters"]:
                self._dead.reload(db)
        return deleted

    def rollup(self, resolution_s: int, device: str, metric: str | None, since: float | None,
               limit: int) -> list[dict[str, Any]]:
        where, args = _filters(device=device, metric=metric)
        where.append("resolution = ?")
        args.append(resolution_s)
        if since is not None:
            where.append("bucket >= ?")
            args.append(since)
        return self._query(f"SELECT bucket, device, metric, count, mean, min, max FROM telemetry_rollup "
                           f"WHERE {' AND '.join(where)} ORDER BY bucket DESC LIMIT ?", [*args, limit])

    def add_ack(self, ack_id: str, gateway: str, received_at: float, result: str, reason: str) -> None:
        with self._write_lock:
            self._writer.execute("INSERT INTO command_acks VALUES (?, ?, ?, ?, ?)",
                                 (ack_id, gateway, received_at, result, reason))

    def gateway_runs(self, limit: int) -> list[tuple[str, str, str, float]]:
        """Agent runs announced by births, oldest first (the newest ``limit``)."""
        with self._write_lock:
            rows = self._writer.execute("SELECT gateway, boot, software, born_at FROM gateway_runs "
                                        "ORDER BY born_at DESC LIMIT ?", (limit,)).fetchall()
        return list(reversed(rows))

    def counters(self) -> dict[str, int]:
        with self._write_lock:
            return dict(self._writer.execute("SELECT name, value FROM counters"))

    # -- reads (API) -----------------------------------------------------------------

    def _query(self, sql: str, args: Iterable[Any] = ()) -> list[dict[str, Any]]:
        with self._read_lock:
            return [dict(r) for r in self._reader.execute(sql, tuple(args)).fetchall()]

    def telemetry(self, device: str | None, metric: str | None, since: float | None, limit: int) -> list[dict[str, Any]]:
        where, args = _filters(device=device, metric=metric)
        if since is not None:
            where.append("ts >= ?")
            args.append(since)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self._query(f"SELECT ts, device, metric, value, gateway, seq, hist, quality FROM telemetry {clause} "
                           "ORDER BY ts DESC LIMIT ?", [*args, limit])
        for r in rows:  # stored as the reason ('' for good); read as the level with its reason
            reason = r.pop("quality") or "good"
            r["quality"] = QUALITY_LEVELS.get(reason, "bad")
            if reason != "good":
                r["quality_reason"] = reason
        return rows

    def dead_letters(self, reason: str | None, limit: int, *, topic: str | None = None, since: float | None = None,
                     until: float | None = None) -> list[dict[str, Any]]:
        """Newest first; ``topic`` matches a prefix (``mb/v1/xihu-demo/gw-b1/``), times bound ``received_at``."""
        where, args = _filters(reason=reason)
        if topic is not None:
            where.append("substr(topic, 1, ?) = ?")
            args += [len(topic), topic]
        for op, value in ((">=", since), ("<", until)):
            if value is not None:
                where.append(f"received_at {op} ?")
                args.append(value)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self._query(f"SELECT id, received_at, topic, reason, detail, size, sha256, raw FROM dead_letters {clause} "
                           "ORDER BY id DESC LIMIT ?", [*args, limit])
        for r in rows:
            raw: bytes = r.pop("raw")
            r["raw_text"] = raw.decode("utf-8", errors="replace")[:2048]
            r["raw_hex"] = raw[:256].hex()
        return rows

    def dead_letter_stats(self) -> DeadLetterStats:
        """Rows and bytes the dead letters hold now, and their counts per reason (for /metrics)."""
        return self._dead.snapshot()

    def counts(self) -> dict[str, int]:
        with self._read_lock:
            return {
                "telemetry_rows": self._reader.execute("SELECT COUNT(*) FROM telemetry").fetchone()[0],
                "dead_letters": self._reader.execute("SELECT COUNT(*) FROM dead_letters").fetchone()[0],
            }


def _filters(**equal: str | None) -> tuple[list[str], list[Any]]:
    where = [f"{k} = ?" for k, v in equal.items() if v is not None]
    return where, [v for v in equal.values() if v is not None]


def _migrate(db: sqlite3.Connection) -> None:
    """Databases from before messages carried their agent run into storage gain the columns."""
    for table, column, decl in (("telemetry", "boot", "TEXT NOT NULL DEFAULT ''"),
                                ("events", "boot", "TEXT NOT NULL DEFAULT ''"),
                                ("events", "seq", "INTEGER NOT NULL DEFAULT 0"),
                                ("telemetry", "quality", "TEXT NOT NULL DEFAULT ''")):
        columns = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        if column not in columns:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")
