"""City platform storage: batches deduplicated by idempotency key, summaries by their
community and key with the latest revision kept."""

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from contract.city import BatchAck
from contract.fastcodec import FastSummary
from servicekit.sqlite import open_database

# A summary key is its community's own: (community, key), never the key alone.
_SUMMARIES = """(
    key TEXT NOT NULL, community TEXT NOT NULL, revision INTEGER NOT NULL,
    window_start REAL NOT NULL, window_end REAL NOT NULL, received_at REAL NOT NULL, body TEXT NOT NULL,
    period INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (community, key)
)"""
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS batches (
    key TEXT PRIMARY KEY, community TEXT NOT NULL, received_at REAL NOT NULL, summaries INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS summaries {_SUMMARIES};
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS refusals (at REAL NOT NULL, community TEXT NOT NULL, reason TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS refusal_counts (
    route TEXT NOT NULL, status INTEGER NOT NULL, reason TEXT NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY (route, status, reason)
);
CREATE TABLE IF NOT EXISTS ngsi_entities (
    id TEXT PRIMARY KEY, type TEXT NOT NULL, community TEXT NOT NULL, body TEXT NOT NULL, modified REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS downlink (
    community TEXT NOT NULL, seq INTEGER NOT NULL, kind TEXT NOT NULL, signed TEXT NOT NULL, created REAL NOT NULL,
    status TEXT NOT NULL DEFAULT 'issued', reason TEXT NOT NULL DEFAULT '', answered_at REAL,
    PRIMARY KEY (community, seq)
);
"""


class CityStore:
    def __init__(self, path: Path, checkpoint_s: float = 1.0, keep_refusals: int = 10_000) -> None:
        """``keep_refusals``: how many refusals are kept to be read (the newest); anyone can
        cause one, so they must not fill the disk. Their counts are kept whole."""
        self._keep_refusals = keep_refusals
        # 16 KiB pages: a summary is about 2 KiB of JSON, which on 4 KiB pages leaves most of
        # a page's second half empty; measured, the larger pages write 40% fewer bytes (to
        # the WAL, and again at each checkpoint) for the same summaries.
        self._db = open_database(path, _SCHEMA, page_size=16384)
        if "period" not in {r[1] for r in self._db.execute("PRAGMA table_info(summaries)")}:  # an older city
            self._db.execute("ALTER TABLE summaries ADD COLUMN period INTEGER NOT NULL DEFAULT 0")
        _key_summaries_by_community(self._db)
        # Windows by community and granularity (interval windows: period 0; roll-ups: their length).
        self._db.execute("DROP INDEX IF EXISTS summaries_by_community")
        self._db.execute("CREATE INDEX IF NOT EXISTS summaries_by_period ON summaries (community, period, window_start)")
        self._lock = threading.Lock()
        self._last_issued: dict[str, int] = {}
        # WAL checkpoints on a thread of their own (SQLite lets go of the GIL meanwhile), not
        # inside the commit of whichever batch crosses the threshold: measured, they were a
        # third of the time a batch took to store.
        self._db.execute("PRAGMA wal_autocheckpoint=0")
        self._path = path
        self._stop = threading.Event()
        self._checkpointer = threading.Thread(target=self._checkpoints, args=(checkpoint_s,), daemon=True,
                                              name="city-wal-checkpoint")
        self._checkpointer.start()

    def _checkpoints(self, every_s: float) -> None:
        db = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA busy_timeout=5000")
        try:
            while not self._stop.wait(every_s):
                db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            db.close()

    def close(self) -> None:
        self._stop.set()
        self._checkpointer.join()
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._db.close()

    def accept(self, key: str, community: str, summaries: list[tuple[FastSummary, bytes]]) -> BatchAck:
        """Store a batch once; a repeated batch, or a summary whose revision is not newer than
        the one held, is acknowledged and not stored again. Each summary is stored as the JSON
        it arrived as. A summary key is the community's own: the same key from another
        community is another summary (keys are predictable, so one community must not be
        able to take or overwrite another's)."""
        now = time.time()
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                if db.execute("SELECT 1 FROM batches WHERE key = ?", (key,)).fetchone():
                    db.execute("ROLLBACK")
                    self._bump("duplicate_batches", 1)
                    return BatchAck(key=key, accepted=0, duplicates=len(summaries))
                before = db.total_changes
                db.executemany(
                    "INSERT INTO summaries VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(community, key) DO UPDATE SET "
                    "revision=excluded.revision, body=excluded.body, received_at=excluded.received_at "
                    "WHERE excluded.revision > summaries.revision",
                    [(s.key, community, s.revision, s.window_start, s.window_end, now, raw.decode(), s.period_s)
                     for s, raw in summaries])
                accepted = db.total_changes - before
                db.execute("INSERT INTO batches VALUES (?, ?, ?, ?)", (key, community, now, len(summaries)))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            duplicates = len(summaries) - accepted
            self._bump("duplicate_summaries", duplicates)
        return BatchAck(key=key, accepted=accepted, duplicates=duplicates)

    def refused(self, community: str, reason: str, foreign_summaries: int = 0) -> None:
        """A batch refused (signature, encoding, another community's summaries in it): kept
        for a person to see; ``foreign_summaries``: how many it carried for others."""
        with self._lock:
            self._keep_refusal(community, reason)
            self._bump("refused_batches", 1)
            if foreign_summaries:
                self._bump("refused_foreign_summaries", foreign_summaries)

    def refused_entities(self, community: str, reason: str, refused: int, foreign: int) -> None:
        """NGSI-LD entities refused from an upsert whose others were taken (207): kept for a
        person to see, and counted."""
        with self._lock:
            self._keep_refusal(community, reason)
            self._bump("refused_entities", refused)
            if foreign:
                self._bump("refused_foreign_entities", foreign)

    def _keep_refusal(self, community: str, reason: str) -> None:
        """The refusal's row; the oldest beyond ``keep_refusals`` go (counted)."""
        cur = self._db.execute("INSERT INTO refusals VALUES (?, ?, ?)", (time.time(), community[:128], reason[:500]))
        oldest_kept = (cur.lastrowid or 0) - self._keep_refusals
        if oldest_kept > 0:
            gone = self._db.execute("DELETE FROM refusals WHERE rowid <= ?", (oldest_kept,)).rowcount
            self._bump("refusals_forgotten", gone)

    def count_refusal(self, route: str, status: int, reason: str) -> None:
        """One request refused (4xx), by route, status and a short reason: what metrics show."""
        with self._lock:
            self._db.execute("INSERT INTO refusal_counts VALUES (?, ?, ?, 1) ON CONFLICT(route, status, reason) "
                             "DO UPDATE SET n = n + 1", (route[:200], status, reason[:100]))

    def refusal_counts(self) -> list[dict[str, object]]:
        with self._lock:
            rows = self._db.execute("SELECT route, status, reason, n FROM refusal_counts "
                                    "ORDER BY route, status, reason").fetchall()
        return [{"route": r, "status": s, "reason": why, "count": n} for r, s, why, n in rows]

    def refusals(self, limit: int) -> list[dict[str, object]]:
        with self._lock:
            rows = self._db.execute("SELECT at, community, reason FROM refusals ORDER BY at DESC LIMIT ?",
                                    (limit,)).fetchall()
        return [{"at": a, "community": c, "reason": r} for a, c, r in rows]

    # -- NGSI-LD entities (the context-broker face of the city) ----------------------------

    def upsert_entities(self, community: str, entities: list[dict[str, object]]) -> None:
        now = time.time()
        with self._lock:
            self._db.executemany("INSERT INTO ngsi_entities VALUES (?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET "
                                 "body = excluded.body, modified = excluded.modified",
                                 [(e["id"], e["type"], community, json.dumps(e, ensure_ascii=False), now)
                                  for e in entities])

    def entities(self, kind: str | None, id_prefix: str | None, limit: int) -> list[dict[str, object]]:
        sql, args = "SELECT body FROM ngsi_entities WHERE 1=1", []
        if kind:
            sql += " AND type = ?"
            args.append(kind)
        if id_prefix:
            sql += " AND substr(id, 1, ?) = ?"
            args += [len(id_prefix), id_prefix]
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY id LIMIT ?", (*args, limit)).fetchall()
        return [json.loads(r[0]) for r in rows]

    # -- downlink: items issued to a community, and its answers ------------------------------

    def next_seq(self, community: str) -> int:
        return self.last_issued(community) + 1

    def last_issued(self, community: str) -> int:
        """The community's last item number: from memory once known, so that a held
        downlink request can look often without touching the database."""
        last = self._last_issued.get(community)
        if last is None:
            with self._lock:
                (last,) = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM downlink WHERE community = ?",
                                           (community,)).fetchone()
                last = self._last_issued.setdefault(community, int(last))
        return last

    def issue(self, community: str, seq: int, kind: str, signed: str) -> None:
        self.last_issued(community)  # known before this one is added
        with self._lock:
            self._db.execute("INSERT INTO downlink (community, seq, kind, signed, created) VALUES (?, ?, ?, ?, ?)",
                             (community, seq, kind, signed, time.time()))
            self._last_issued[community] = max(self._last_issued[community], seq)

    def downlink_after(self, community: str, after: int, limit: int) -> list[str]:
        with self._lock:
            rows = self._db.execute("SELECT signed FROM downlink WHERE community = ? AND seq > ? ORDER BY seq LIMIT ?",
                                    (community, after, limit)).fetchall()
        return [r[0] for r in rows]

    def answered(self, community: str, seq: int, status: str, reason: str, at: float) -> bool:
        """Record a community's answer to an item; False for an item it was never sent."""
        with self._lock:
            cur = self._db.execute("UPDATE downlink SET status = ?, reason = ?, answered_at = ? "
                                   "WHERE community = ? AND seq = ?", (status, reason[:500], at, community, seq))
            if cur.rowcount and status == "refused":
                self._bump("downlink_refused", 1)
        return bool(cur.rowcount)

    def downlink(self, community: str | None, limit: int) -> list[dict[str, object]]:
        sql = "SELECT community, seq, kind, signed, created, status, reason, answered_at FROM downlink"
        args: tuple[object, ...] = ()
        if community:
            sql += " WHERE community = ?"
            args = (community,)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY created DESC LIMIT ?", (*args, limit)).fetchall()
        out = []
        for c, seq, kind, signed, created, status, reason, answered_at in rows:
            body = json.loads(json.loads(signed)["item"])["body"]
            out.append({"community": c, "seq": seq, "kind": kind, "created": created, "status": status,
                        "reason": reason, "answered_at": answered_at,
                        "summary": body.get("title") or body.get("version") or
                        {k: v for k, v in body.items() if k != "kind"}})
        return out

    def _bump(self, name: str, by: int) -> None:
        self._db.execute("INSERT INTO counters VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = value + ?",
                         (name, by, by))

    def communities(self) -> list[dict[str, object]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT community, COUNT(*), MAX(window_end), MAX(received_at), "
                "json_group_array(DISTINCT period) FROM summaries GROUP BY community").fetchall()
        return [{"community": c, "summaries": n, "latest_window_end": w, "last_received_at": r,
                 "periods": sorted(json.loads(p))} for c, n, w, r, p in rows]

    def summaries(self, community: str | None, limit: int, period: int | None = None) -> list[dict[str, object]]:
        """Newest first; ``period``: only interval windows (0) or one roll-up (its seconds)."""
        sql, args = "SELECT body FROM summaries WHERE 1=1", []
        if community:
            sql += " AND community = ?"
            args.append(community)
        if period is not None:
            sql += " AND period = ?"
            args.append(period)
        sql += " ORDER BY window_start DESC LIMIT ?"
        with self._lock:
            rows = self._db.execute(sql, (*args, limit)).fetchall()
        return [json.loads(body) for (body,) in rows]

    def latest(self, community: str, period: int = 0) -> dict[str, object] | None:
        """The community's most recent summary of a granularity (its latest revision)."""
        with self._lock:
            row = self._db.execute("SELECT body FROM summaries WHERE community = ? AND period = ? "
                                   "ORDER BY window_start DESC LIMIT 1", (community, period)).fetchone()
        return json.loads(row[0]) if row else None

    def series(self, community: str, since: float, limit: int, period: int = 0) -> list[dict[str, object]]:
        """Key figures per window of a granularity, oldest first: what the city's charts plot."""
        with self._lock:
            rows = self._db.execute(
                "SELECT body FROM summaries WHERE community = ? AND period = ? AND window_start >= ? "
                "ORDER BY window_start LIMIT ?", (community, period, since, limit)).fetchall()
        return [kpis(json.loads(body)) for (body,) in rows]

    def stats(self) -> dict[str, int]:
        with self._lock:
            (summaries,) = self._db.execute("SELECT COUNT(*) FROM summaries").fetchone()
            (batches,) = self._db.execute("SELECT COUNT(*) FROM batches").fetchone()
            counters = dict(self._db.execute("SELECT name, value FROM counters").fetchall())
        return {"summaries": summaries, "batches": batches,
                "duplicate_batches": counters.get("duplicate_batches", 0),
                "duplicate_summaries": counters.get("duplicate_summaries", 0),
                "refused_batches": counters.get("refused_batches", 0),
                "refused_foreign_summaries": counters.get("refused_foreign_summaries", 0),
                "refused_entities": counters.get("refused_entities", 0),
                "refused_foreign_entities": counters.get("refused_foreign_entities", 0),
                "refusals_forgotten": counters.get("refusals_forgotten", 0)}


def _key_summaries_by_community(db: sqlite3.Connection) -> None:
    """A city from before summaries were keyed by community and key (one key space for all
    communities): its table rebuilt once, rows unchanged."""
    pk = sorted((r[5], r[1]) for r in db.execute("PRAGMA table_info(summaries)") if r[5])
    if [name for _, name in pk] != ["key"]:
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        db.execute(f"CREATE TABLE summaries_rekeyed {_SUMMARIES}")
        db.execute("INSERT INTO summaries_rekeyed SELECT key, community, revision, window_start, window_end, "
                   "received_at, body, period FROM summaries")
        db.execute("DROP TABLE summaries")
        db.execute("ALTER TABLE summaries_rekeyed RENAME TO summaries")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def kpis(summary: dict[str, Any]) -> dict[str, object]:
    """The key performance indicators of one community summary."""
    devices = summary.get("devices") or 0
    orders = summary.get("work_orders") or {}
    utilities = summary.get("utilities") or {}
    return {
        "window_start": summary["window_start"], "window_end": summary["window_end"],
        "revision": summary.get("revision", 0), "period_s": summary.get("period_s", 0),
        "online_share": round(summary["online"] / devices, 4) if devices else None,
        "alerts": sum((summary.get("alerts") or {}).values()),
        "critical_alerts": (summary.get("alerts_by_severity") or {}).get("critical", 0),
        "work_orders_opened": orders.get("opened"), "work_orders_resolved": orders.get("resolved"),
        "work_orders_overdue": orders.get("overdue"),
        "median_minutes_to_resolve": orders.get("median_minutes_to_resolve"),
        "requests": sum((summary.get("requests") or {}).values()),
        "electricity_kwh": utilities.get("electricity_kwh"), "water_m3": utilities.get("water_m3"),
        **{k: v for k, v in (summary.get("environment") or {}).items()},
        "suppressed": len(summary.get("suppressed") or ()),
    }
