"""The hub's dead letters in SQLite, bounded by count and by bytes.

Policy (``[hub.dead_letters]``, :class:`hub.settings.DeadLetterSettings`):

- each stored payload is cut to ``raw_prefix_bytes``; its original length and the SHA-256 of
  the whole payload are kept, so a person can still tell repeats apart and match a sender's copy;
- the first ``keep_first_per_reason`` letters of each reason are pinned: a flood of one kind
  never pushes out the first example of another;
- the rest are the most recent ones that fit in ``max_rows`` rows and ``max_bytes`` bytes
  (topic + detail + stored payload), the oldest evicted first, after every write;
- counters per reason, kept in the database across restarts, say how many letters were
  stored, truncated and evicted (shown at /metrics); retention still deletes by age.

The functions here run inside the store's write transaction, on its writer connection.
"""

import sqlite3
import threading
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

from hub.settings import DeadLetterSettings

__all__ = ["DeadLetter", "DeadLetterShelf", "DeadLetterStats", "SCHEMA"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY, received_at REAL NOT NULL, topic TEXT NOT NULL, reason TEXT NOT NULL,
    detail TEXT NOT NULL, size INTEGER NOT NULL, raw BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_letters_by_reason ON dead_letters (reason, received_at);
CREATE TABLE IF NOT EXISTS dead_letter_counts (
    reason TEXT PRIMARY KEY, stored INTEGER NOT NULL DEFAULT 0, truncated INTEGER NOT NULL DEFAULT 0,
    evicted INTEGER NOT NULL DEFAULT 0
);
"""

# Columns added to databases from before the quota: the whole payload's SHA-256 (hex), the
# bytes the row holds, and whether it is one of the first of its reason (never evicted).
_COLUMNS = (("sha256", "TEXT NOT NULL DEFAULT ''"), ("stored", "INTEGER NOT NULL DEFAULT 0"),
            ("pinned", "INTEGER NOT NULL DEFAULT 0"))


@dataclass(frozen=True, slots=True)
class DeadLetter:
    received_at: float
    topic: str
    reason: str
    detail: str
    raw: bytes  # possibly truncated; ``size`` is the original length
    size: int
    sha256: str = ""  # of the whole payload, as received


@dataclass
class DeadLetterStats:
    """What /metrics shows: rows and bytes held now, and counts per reason since the database began."""

    rows: int = 0
    bytes: int = 0
    rows_by_reason: Counter[str] = field(default_factory=Counter)
    stored: Counter[str] = field(default_factory=Counter)
    truncated: Counter[str] = field(default_factory=Counter)
    evicted: Counter[str] = field(default_factory=Counter)


class DeadLetterShelf:
    """Writes dead letters under the quota and keeps their counts; the store calls it in its transactions."""

    def __init__(self, db: sqlite3.Connection, settings: DeadLetterSettings) -> None:
        self.settings = settings
        self._lock = threading.Lock()  # /metrics reads the stats from the API's threads
        columns = {row[1] for row in db.execute("PRAGMA table_info(dead_letters)")}
        for column, decl in _COLUMNS:
            if column not in columns:
                db.execute(f"ALTER TABLE dead_letters ADD COLUMN {column} {decl}")
        db.execute("UPDATE dead_letters SET stored = length(topic) + length(detail) + length(raw) WHERE stored = 0")
        self.stats = DeadLetterStats()
        for reason, stored, truncated, evicted in db.execute("SELECT * FROM dead_letter_counts"):
            self.stats.stored[reason], self.stats.truncated[reason] = stored, truncated
            self.stats.evicted[reason] = evicted
        self.reload(db)
        # A database from before the quota, or a quota made smaller: fit it now, not at the next letter.
        db.execute("BEGIN")
        try:
            with self._lock:
                self._count(db, Counter(), Counter(), self._evict(db))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def snapshot(self) -> DeadLetterStats:
        """A copy of the stats, consistent with one write."""
        with self._lock:
            s = self.stats
            return replace(s, rows_by_reason=+s.rows_by_reason, stored=Counter(s.stored),
                           truncated=Counter(s.truncated), evicted=Counter(s.evicted))

    def reload(self, db: sqlite3.Connection) -> None:
        """Re-read what the table holds (at start, and after retention deleted rows)."""
        with self._lock:
            self._reload(db)

    def _reload(self, db: sqlite3.Connection) -> None:
        s = self.stats
        s.rows_by_reason = Counter({r: n for r, n in db.execute(
            "SELECT reason, COUNT(*) FROM dead_letters GROUP BY reason")})
        s.rows = sum(s.rows_by_reason.values())
        s.bytes = db.execute("SELECT COALESCE(SUM(stored), 0) FROM dead_letters").fetchone()[0]
        self._pinned = Counter({r: n for r, n in db.execute(
            "SELECT reason, COUNT(*) FROM dead_letters WHERE pinned = 1 GROUP BY reason")})

    def write(self, db: sqlite3.Connection, dead: list[DeadLetter] | tuple[DeadLetter, ...]) -> None:
        """Insert ``dead`` (payloads cut to the prefix), then evict down to the quota; inside the caller's transaction."""
        keep, first = self.settings.raw_prefix_bytes, self.settings.keep_first_per_reason
        rows: list[tuple[Any, ...]] = []
        stored, truncated = Counter[str](), Counter[str]()
        added = 0
        for d in dead:
            raw = d.raw[:keep]
            if d.size > len(raw):
                truncated[d.reason] += 1
            pinned = self._pinned[d.reason] < first
            if pinned:
                self._pinned[d.reason] += 1
            size = len(d.topic.encode()) + len(d.detail.encode()) + len(raw)
            rows.append((d.received_at, d.topic, d.reason, d.detail, d.size, raw, d.sha256, size, int(pinned)))
            stored[d.reason] += 1
            added += size
        db.executemany("INSERT INTO dead_letters (received_at, topic, reason, detail, size, raw, sha256, stored, "
                       "pinned) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        with self._lock:
            s = self.stats
            s.rows += len(rows)
            s.bytes += added
            s.rows_by_reason.update(stored)
            evicted = self._evict(db)
            self._count(db, stored, truncated, evicted)

    def _evict(self, db: sqlite3.Connection) -> Counter[str]:
        """Delete the oldest unpinned letters until the rows and bytes fit the quota."""
        s, cap = self.stats, self.settings
        evicted: Counter[str] = Counter()
        if s.rows <= cap.max_rows and s.bytes <= cap.max_bytes:
            return evicted
        rows, size, last = s.rows, s.bytes, None
        oldest = db.execute("SELECT id, reason, stored FROM dead_letters WHERE pinned = 0 ORDER BY id")
        try:
            for row_id, reason, stored in oldest:
                if rows <= cap.max_rows and size <= cap.max_bytes:
                    break
                rows, size, last = rows - 1, size - stored, row_id
                evicted[reason] += 1
        finally:
            oldest.close()
        if last is not None:
            db.execute("DELETE FROM dead_letters WHERE pinned = 0 AND id <= ?", (last,))
        s.rows, s.bytes = rows, size
        s.rows_by_reason.subtract(evicted)
        return evicted

    def _count(self, db: sqlite3.Connection, stored: Counter[str], truncated: Counter[str],
               evicted: Counter[str]) -> None:
        s = self.stats
        s.stored.update(stored)
        s.truncated.update(truncated)
        s.evicted.update(evicted)
        reasons = set(stored) | set(evicted)
        db.executemany("INSERT INTO dead_letter_counts VALUES (?, ?, ?, ?) ON CONFLICT(reason) DO UPDATE SET "
                       "stored = stored + excluded.stored, truncated = truncated + excluded.truncated, "
                       "evicted = evicted + excluded.evicted",
                       ((r, stored[r], truncated[r], evicted[r]) for r in reasons))
