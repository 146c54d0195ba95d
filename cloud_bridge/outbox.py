"""The bridge's durable outbox (SQLite, WAL).

Summaries enter ``pending``; the sealer moves up to ``batch_max`` of them into one batch
with a fresh idempotency key, in one transaction, so a batch's content never changes
across retries or restarts. A batch is deleted only when the city acknowledges it.

Bounds, each with its counter:

- **Size**: at most ``max_summaries`` waiting (pending and in batches). When full, the
  ``refuse`` policy (the default) refuses the new summary: the bridge does not
  acknowledge it, so the hub's broker keeps it until there is room, and nothing is lost
  while the broker's queue lasts. ``drop_oldest`` drops the oldest routine summary
  instead; its key and the reason are kept in ``discarded``.
- **Age**: a summary older than ``ttl_s`` is of no use to the city any more; it is moved
  to ``discarded`` (reason ``ttl``) instead of being sent.
- **Priority**: priority 0 (a window with alerts) is sealed and sent before priority 1
  (routine).
"""

import gzip
import hashlib
import json
import logging
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from contract.city import Batch, CommunitySummary, sign, verify
from servicekit.sqlite import open_database

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pending (
    key TEXT PRIMARY KEY, created REAL NOT NULL, body TEXT NOT NULL, priority INTEGER NOT NULL DEFAULT 1,
    revision INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS batches (
    key TEXT PRIMARY KEY, created REAL NOT NULL, body TEXT NOT NULL, summaries INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT NOT NULL DEFAULT '', priority INTEGER NOT NULL DEFAULT 1,
    summary_keys TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS pending_by_age ON pending (created);
CREATE INDEX IF NOT EXISTS batches_by_age ON batches (created);
CREATE TABLE IF NOT EXISTS discarded (
    key TEXT NOT NULL, created REAL NOT NULL, discarded_at REAL NOT NULL, reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS rejected (
    key TEXT PRIMARY KEY, rejected_at REAL NOT NULL, reason TEXT NOT NULL, body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS seen (key TEXT PRIMARY KEY, created REAL NOT NULL);
CREATE INDEX IF NOT EXISTS seen_by_age ON seen (created);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS egress_log (
    seq INTEGER PRIMARY KEY, batch_key TEXT UNIQUE NOT NULL, sent_at REAL NOT NULL, destination TEXT NOT NULL,
    body_sha256 TEXT NOT NULL, bytes INTEGER NOT NULL, summaries TEXT NOT NULL, prev_hash TEXT NOT NULL,
    entry_hash TEXT NOT NULL, signature TEXT NOT NULL, acknowledged_at REAL
);
"""

# The signed fields of an egress-log entry, in this order (acknowledged_at is not signed:
# it is filled in later).
EGRESS_FIELDS = ("seq", "batch_key", "sent_at", "destination", "body_sha256", "bytes", "summaries", "prev_hash")


def egress_entry_hash(entry: dict[str, object]) -> str:
    canonical = json.dumps([entry[f] for f in EGRESS_FIELDS], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def key_id(key: bytes) -> str:
    """A short fingerprint of a signing key: tells whether a stored signature is still the
    current key's, without keeping the key itself next to it."""
    return hashlib.sha256(b"midbrain-batch-key:" + key).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class OutgoingBatch:
    """A sealed batch as it goes out: ``payload`` is the request body (gzip-compressed when
    ``encoding`` is "gzip"), ``signature`` the signing key's HMAC of the uncompressed body,
    made when the batch was sealed ("" if it was not), ``key_id`` that key's fingerprint."""

    key: str
    payload: bytes
    summaries: int
    attempts: int
    summary_keys: tuple[str, ...] = ()
    encoding: str = ""
    signature: str = ""
    key_id: str = ""
    body_sha256: str = ""
    body_bytes: int = 0

    @classmethod
    def of(cls, key: str, body: bytes, summaries: int, attempts: int, summary_keys: tuple[str, ...], *,
           signing_key: bytes = b"", gzip_min_bytes: int | None = None) -> "OutgoingBatch":
        """Prepare an uncompressed ``body`` once for every sending: compressed (at level 6,
        the fewest bytes up) when at least ``gzip_min_bytes``, hashed, and signed."""
        compress = gzip_min_bytes is not None and len(body) >= gzip_min_bytes
        return cls(key, gzip.compress(body, 6, mtime=0) if compress else body, summaries, attempts, summary_keys,
                   encoding="gzip" if compress else "", signature=sign(signing_key, body) if signing_key else "",
                   key_id=key_id(signing_key) if signing_key else "", body_sha256=hashlib.sha256(body).hexdigest(),
                   body_bytes=len(body))

    @property
    def body(self) -> bytes:
        """The batch's JSON, uncompressed."""
        return gzip.decompress(self.payload) if self.encoding == "gzip" else self.payload


class OutboxFull(Exception):
    """The outbox holds max_summaries and its policy is to refuse: the caller keeps the summary."""


FullPolicy = Literal["refuse", "drop_oldest"]
PRIORITY_ALERT, PRIORITY_ROUTINE = 0, 1


class Outbox:
    def __init__(self, path: Path, *, remember_keys_s: float = 7 * 86400, max_summaries: int = 1_000_000,
                 full_policy: FullPolicy = "refuse", ttl_s: float = 7 * 86400, signing_key: bytes = b"",
                 gzip_min_bytes: int | None = 1024) -> None:
        self.remember_keys_s = remember_keys_s
        # A batch is compressed and signed once, when it is sealed, and stored as it will be
        # sent: a backlog takes a fraction of the disk, and draining it costs no compression.
        self.signing_key = signing_key
        self.gzip_min_bytes = gzip_min_bytes
        self.max_summaries = max_summaries
        self.full_policy = full_policy
        self.ttl_s = ttl_s
        self._db = open_database(path, _SCHEMA, synchronous="FULL")  # an accepted summary survives power loss
        for table, column, declared in (("pending", "priority", "INTEGER NOT NULL DEFAULT 1"),  # older outboxes
                                        ("pending", "revision", "INTEGER NOT NULL DEFAULT 0"),
                                        ("batches", "priority", "INTEGER NOT NULL DEFAULT 1"),
                                        ("batches", "summary_keys", "TEXT NOT NULL DEFAULT ''"),
                                        ("batches", "encoding", "TEXT NOT NULL DEFAULT ''"),
                                        ("batches", "signature", "TEXT NOT NULL DEFAULT ''"),
                                        ("batches", "key_id", "TEXT NOT NULL DEFAULT ''"),
                                        ("batches", "body_sha256", "TEXT NOT NULL DEFAULT ''"),
                                        ("batches", "body_bytes", "INTEGER NOT NULL DEFAULT 0")):
            if column not in {r[1] for r in self._db.execute(f"PRAGMA table_info({table})")}:
                self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declared}")
        self._lock = threading.Lock()
        self._waiting_count: int | None = None
        # Batches are read on a connection of their own: in WAL mode a reader does not wait
        # for the writer, whose commits here wait for the disk (synchronous=FULL).
        self._reader = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._reader.execute("PRAGMA busy_timeout=5000")
        self._read_lock = threading.Lock()

    def close(self) -> None:
        self._reader.close()
        self._db.close()

    def add(self, summary: CommunitySummary, priority: int = PRIORITY_ROUTINE) -> bool:
        """Keep a summary for sending; False if this key was produced before (redelivery).
        OutboxFull if the outbox is full and its policy is to refuse."""
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                # A revision is a new summary under the same key: remembered as "key#revision".
                seen_key = summary.key if not summary.revision else f"{summary.key}#{summary.revision}"
                if db.execute("SELECT 1 FROM seen WHERE key = ?", (seen_key,)).fetchone():
                    db.execute("COMMIT")
                    return False
                held = db.execute("SELECT revision FROM pending WHERE key = ?", (summary.key,)).fetchone()
                if held is not None:
                    # An earlier revision still waits unsealed: the newer one takes its place
                    # (an older one, redelivered late, is dropped).
                    if held[0] < summary.revision:
                        db.execute("UPDATE pending SET body = ?, revision = ?, priority = MIN(priority, ?) "
                                   "WHERE key = ?", (summary.model_dump_json(), summary.revision, priority, summary.key))
                        self._bump("produced", 1)
                        self._bump("superseded", 1)  # the earlier revision will never be sent
                    db.execute("INSERT INTO seen VALUES (?, ?)", (seen_key, time.time()))
                    db.execute("COMMIT")
                    return held[0] < summary.revision
                if self._waiting() >= self.max_summaries and not self._make_room():
                    self._bump("full_refused", 1)
                    db.execute("COMMIT")
                    raise OutboxFull(f"outbox holds {self.max_summaries} summaries (policy {self.full_policy})")
                now = time.time()
                db.execute("INSERT INTO seen VALUES (?, ?)", (seen_key, now))
                db.execute("INSERT INTO pending (key, created, body, priority, revision) VALUES (?, ?, ?, ?, ?)",
                           (summary.key, now, summary.model_dump_json(), priority, summary.revision))
                self._bump("produced", 1)
                db.execute("COMMIT")
                if self._waiting_count is not None:
                    self._waiting_count += 1
            except OutboxFull:
                raise
            except BaseException:
                self._waiting_count = None
                db.execute("ROLLBACK")
                raise
        return True

    def _waiting(self) -> int:
        """Summaries waiting (pending or sealed): counted once, then kept up to date by add();
        whatever else removes summaries forgets the count, to be counted again."""
        if self._waiting_count is None:
            (pending,) = self._db.execute("SELECT COUNT(*) FROM pending").fetchone()
            (in_batches,) = self._db.execute("SELECT COALESCE(SUM(summaries), 0) FROM batches").fetchone()
            self._waiting_count = int(pending) + int(in_batches)
        return self._waiting_count

    def _make_room(self) -> bool:
        """Under ``drop_oldest``: drop the oldest pending summary, routine ones first."""
        if self.full_policy != "drop_oldest":
            return False
        row = self._db.execute("SELECT key, created FROM pending ORDER BY priority DESC, created LIMIT 1").fetchone()
        if row is None:  # everything waiting is sealed in batches: those are never changed
            return False
        self._waiting_count = None
        self._db.execute("DELETE FROM pending WHERE key = ?", (row[0],))
        self._db.execute("INSERT INTO discarded VALUES (?, ?, ?, 'full')", (row[0], row[1], time.time()))
        self._bump("dropped_full", 1)
        log.warning("outbox full: dropped summary %s (policy drop_oldest)", row[0])
        return True

    def _expire(self, now: float) -> None:
        """Move what is older than ttl_s aside instead of sending it."""
        horizon = now - self.ttl_s
        db = self._db
        old = db.execute("SELECT key, created FROM pending WHERE created < ?", (horizon,)).fetchall()
        batches = db.execute("SELECT key, created, summaries FROM batches WHERE created < ?", (horizon,)).fetchall()
        if not old and not batches:
            return
        db.executemany("INSERT INTO discarded VALUES (?, ?, ?, 'ttl')", [(k, c, now) for k, c in old])
        self._waiting_count = None
        db.execute("DELETE FROM pending WHERE created < ?", (horizon,))
        db.executemany("INSERT INTO discarded VALUES (?, ?, ?, 'ttl-batch')", [(k, c, now) for k, c, _ in batches])
        db.execute("DELETE FROM batches WHERE created < ?", (horizon,))
        expired = len(old) + sum(n for _, _, n in batches)
        self._bump("expired", expired)
        log.warning("outbox: %d summaries older than %.0f s expired unsent (kept in 'discarded' by key)", expired,
                    self.ttl_s)

    def discarded(self, limit: int = 100) -> list[dict[str, object]]:
        """Summaries (or, reason ttl-batch, whole batches) dropped unsent, newest first."""
        with self._lock:
            rows = self._db.execute("SELECT key, created, discarded_at, reason FROM discarded "
                                    "ORDER BY discarded_at DESC LIMIT ?", (limit,)).fetchall()
        return [{"key": k, "created": c, "discarded_at": d, "reason": r} for k, c, d, r in rows]

    def seal(self, community: str, batch_max: int, linger_s: float = 0.0) -> int:
        """Move up to ``batch_max`` pending summaries into a new batch; return how many.

        ``linger_s``: routine summaries wait until ``batch_max`` of them are pending or the
        oldest has waited this long, so that batches (and their per-request overhead) are
        fewer; summaries with alerts never wait."""
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                # Redelivery comes within minutes; keys older than this are forgotten (the
                # city deduplicates by key as well), so that the table stays bounded.
                db.execute("DELETE FROM seen WHERE created < ?", (time.time() - self.remember_keys_s,))
                self._expire(time.time())
                # One priority per batch, the most urgent first.
                rows = db.execute("SELECT key, body, priority, created FROM pending WHERE priority = "
                                  "(SELECT MIN(priority) FROM pending) ORDER BY created, key LIMIT ?",
                                  (batch_max,)).fetchall()
                if rows and linger_s > 0 and rows[0][2] != PRIORITY_ALERT and len(rows) < batch_max \
                        and rows[0][3] > time.time() - linger_s:
                    rows = []  # routine, too few, and none has waited long enough yet
                if not rows:
                    db.execute("COMMIT")
                    return 0
                summaries = tuple(CommunitySummary.model_validate_json(body) for _, body, _, _ in rows)
                batch = Batch(key=str(uuid.uuid4()), community=community, sent_at=time.time(), summaries=summaries)
                out = OutgoingBatch.of(batch.key, batch.model_dump_json().encode(), len(summaries), 0, (),
                                       signing_key=self.signing_key, gzip_min_bytes=self.gzip_min_bytes)
                db.execute("INSERT INTO batches (key, created, body, summaries, priority, summary_keys, encoding, "
                           "signature, key_id, body_sha256, body_bytes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           (batch.key, time.time(), out.payload, len(summaries), rows[0][2],
                            json.dumps([r[0] for r in rows]), out.encoding, out.signature, out.key_id,
                            out.body_sha256, out.body_bytes))
                db.executemany("DELETE FROM pending WHERE key = ?", [(r[0],) for r in rows])
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return len(rows)

    def next_batch(self, skip: frozenset[str] = frozenset()) -> OutgoingBatch | None:
        """The batch to send next (most urgent, then oldest), other than those in ``skip``
        (already on their way)."""
        marks = ",".join("?" * len(skip))
        with self._read_lock:
            row = self._reader.execute("SELECT key, body, summaries, attempts, summary_keys, encoding, signature, "
                                       "key_id, body_sha256, body_bytes FROM batches "
                                       + (f"WHERE key NOT IN ({marks}) " if skip else "")
                                       + "ORDER BY priority, created LIMIT 1", tuple(skip)).fetchone()
        if row is None:
            return None
        key, payload, summaries, attempts, summary_keys, encoding, signature, kid, sha256, size = row
        payload = payload if isinstance(payload, bytes) else payload.encode()  # older outboxes stored text
        if not sha256:  # sealed by an older bridge: stored uncompressed, unsigned, unhashed
            keys = json.loads(summary_keys) if summary_keys else [s["key"] for s in json.loads(payload)["summaries"]]
            return OutgoingBatch.of(key, payload, summaries, attempts, tuple(keys))
        return OutgoingBatch(key, payload, summaries, attempts, tuple(json.loads(summary_keys)), encoding, signature,
                             kid, sha256, size)

    def acknowledged(self, key: str) -> None:
        with self._lock:
            db = self._db
            # Without waiting for the disk: lost at a power cut, this deletion costs only a
            # repeated sending, which the city drops by the batch's key.
            db.execute("PRAGMA synchronous=NORMAL")
            try:
                self._acknowledged(key)
            finally:
                db.execute("PRAGMA synchronous=FULL")

    def _acknowledged(self, key: str) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        db.execute("UPDATE egress_log SET acknowledged_at = ? WHERE batch_key = ?", (round(time.time(), 3), key))
        (n,) = db.execute("SELECT summaries FROM batches WHERE key = ?", (key,)).fetchone() or (0,)
        self._waiting_count = None
        db.execute("DELETE FROM batches WHERE key = ?", (key,))
        self._bump("acknowledged", n)
        self._bump("batches_acknowledged", 1 if n else 0)
        db.execute("COMMIT")

    def failed(self, key: str, error: str) -> None:
        with self._lock:
            self._db.execute("UPDATE batches SET attempts = attempts + 1, last_error = ? WHERE key = ?", (error[:500], key))

    def reject(self, key: str, reason: str) -> None:
        """The city refused this batch for good: keep it aside for a person, stop retrying."""
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            row = db.execute("SELECT body, summaries, encoding FROM batches WHERE key = ?", (key,)).fetchone()
            if row:
                body = gzip.decompress(row[0]) if row[2] == "gzip" else row[0]  # kept readable, for a person
                db.execute("INSERT OR REPLACE INTO rejected VALUES (?, ?, ?, ?)",
                           (key, time.time(), reason[:1000], body.decode() if isinstance(body, bytes) else body))
                self._waiting_count = None
                db.execute("DELETE FROM batches WHERE key = ?", (key,))
                self._bump("rejected", row[1])
            db.execute("COMMIT")

    # -- the egress log: what left the community, when, to whom ---------------------------

    def log_sent(self, batch: OutgoingBatch, destination: str, key: bytes) -> None:
        """Record a batch before its first sending: an entry chained to the one before it
        (its hash includes the previous entry's) and signed with the community key, so
        that an entry cannot be changed or removed unnoticed."""
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                if db.execute("SELECT 1 FROM egress_log WHERE batch_key = ?", (batch.key,)).fetchone():
                    db.execute("COMMIT")
                    return
                last = db.execute("SELECT seq, entry_hash FROM egress_log ORDER BY seq DESC LIMIT 1").fetchone()
                entry: dict[str, object] = {
                    "seq": (last[0] + 1) if last else 1, "batch_key": batch.key, "sent_at": round(time.time(), 3),
                    "destination": destination, "body_sha256": batch.body_sha256, "bytes": batch.body_bytes,
                    "summaries": json.dumps(list(batch.summary_keys)),
                    "prev_hash": last[1] if last else "",
                }
                digest = egress_entry_hash(entry)
                db.execute("INSERT INTO egress_log VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)",
                           (*(entry[f] for f in EGRESS_FIELDS), digest, sign(key, digest.encode())))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def egress_log(self, limit: int = 100, before: int | None = None) -> list[dict[str, object]]:
        """Entries newest first."""
        sql = "SELECT * FROM egress_log" + (" WHERE seq < ?" if before is not None else "") + " ORDER BY seq DESC LIMIT ?"
        with self._lock:
            cur = self._db.execute(sql, (*(() if before is None else (before,)), limit))
            names = [d[0] for d in cur.description]
            rows = cur.fetchall()
        out = []
        for row in rows:
            entry = dict(zip(names, row, strict=True))
            entry["summaries"] = json.loads(str(entry["summaries"]))
            out.append(entry)
        return out

    def verify_egress_log(self, key: bytes) -> dict[str, object]:
        """Check every entry's hash, chain and signature; the first that fails, if any."""
        with self._lock:
            cur = self._db.execute("SELECT * FROM egress_log ORDER BY seq")
            names = [d[0] for d in cur.description]
            rows = cur.fetchall()
        prev, checked = "", 0
        for row in rows:
            entry = dict(zip(names, row, strict=True))
            digest = egress_entry_hash(entry)
            problem = ("hash" if digest != entry["entry_hash"] else "chain" if entry["prev_hash"] != prev
                       else "signature" if not verify(key, digest.encode(), str(entry["signature"])) else None)
            if problem:
                return {"ok": False, "entries": len(rows), "checked": checked, "first_bad_seq": entry["seq"],
                        "problem": problem}
            prev, checked = str(entry["entry_hash"]), checked + 1
        return {"ok": True, "entries": len(rows), "checked": checked}

    def _bump(self, name: str, by: int) -> None:
        self._db.execute("INSERT INTO counters VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = value + ?",
                         (name, by, by))

    def stats(self) -> dict[str, int]:
        with self._lock:
            db = self._db
            counters = dict(db.execute("SELECT name, value FROM counters").fetchall())
            (pending,) = db.execute("SELECT COUNT(*) FROM pending").fetchone()
            (in_batches,) = db.execute("SELECT COALESCE(SUM(summaries), 0) FROM batches").fetchone()
            (batches,) = db.execute("SELECT COUNT(*) FROM batches").fetchone()
            (oldest,) = db.execute("SELECT MIN(c) FROM (SELECT MIN(created) AS c FROM pending "
                                   "UNION ALL SELECT MIN(created) FROM batches)").fetchone()
        return {"produced": counters.get("produced", 0), "acknowledged": counters.get("acknowledged", 0),
                "rejected": counters.get("rejected", 0), "pending": pending, "in_batches": in_batches,
                "expired": counters.get("expired", 0), "dropped_full": counters.get("dropped_full", 0),
                "full_refused": counters.get("full_refused", 0), "superseded": counters.get("superseded", 0),
                "batches_waiting": batches, "batches_acknowledged": counters.get("batches_acknowledged", 0),
                "oldest_age_s": round(time.time() - oldest, 3) if oldest is not None else 0.0}
