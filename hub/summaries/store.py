"""Summaries kept in SQLite (the tables ``summaries_unpublished``, ``summaries_kept`` and
``summary_rollups``, owned here): each until the broker has accepted it, so a hub restarted
while the broker is unreachable still publishes every summary it produced, and each
window's latest revision for ``revise_within_s``, for late data and roll-ups to revise.
"""

import threading
import time
from pathlib import Path

from servicekit.sqlite import open_database

_SCHEMA = """
CREATE TABLE IF NOT EXISTS summaries_unpublished (
    window_start REAL PRIMARY KEY, body BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS summaries_kept (
    window_start REAL PRIMARY KEY, window_end REAL NOT NULL, body BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS summary_rollups (
    period INTEGER NOT NULL, window_start REAL NOT NULL, window_end REAL NOT NULL, body BLOB NOT NULL,
    published INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (period, window_start)
);
"""


class SummaryStore:
    def __init__(self, path: Path) -> None:
        self._writer = open_database(path, _SCHEMA)
        self._write_lock = threading.Lock()

    def close(self) -> None:
        self._writer.close()

    def keep_summary(self, window_start: float, body: bytes, window_end: float | None = None,
                     revise_within_s: float = 86400.0) -> None:
        """Keep a summary until the broker has accepted it (survives a hub restart), and as
        its window's latest revision, for late data to revise (for ``revise_within_s``)."""
        with self._write_lock:
            db = self._writer
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute("INSERT OR REPLACE INTO summaries_unpublished VALUES (?, ?)", (window_start, body))
                if window_end is not None:
                    db.execute("INSERT OR REPLACE INTO summaries_kept VALUES (?, ?, ?)", (window_start, window_end, body))
                    db.execute("DELETE FROM summaries_kept WHERE window_end < ?", (time.time() - revise_within_s,))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def kept_summary(self, start: float, end: float) -> bytes | None:
        """The latest revision of the summary kept for the window that overlaps [start, end)
        most (the later one at a hub restart, which splits an aligned window in two)."""
        with self._write_lock:
            row = self._writer.execute("SELECT body FROM summaries_kept WHERE window_start < ? AND window_end > ? "
                                       "ORDER BY MIN(window_end, ?) - MAX(window_start, ?) DESC, window_start DESC "
                                       "LIMIT 1", (end, start, end, start)).fetchone()
        return row[0] if row else None

    def kept_summaries_in(self, start: float, end: float) -> list[bytes]:
        """The latest revisions of the interval summaries kept for windows in [start, end),
        oldest first."""
        with self._write_lock:
            return [r[0] for r in self._writer.execute(
                "SELECT body FROM summaries_kept WHERE window_start >= ? AND window_start < ? ORDER BY window_start",
                (start, end))]

    def rollups_due(self, period: int, upto: float, since: float) -> list[float]:
        """Starts of the ``period`` windows ended by ``upto`` (and not before ``since``) that
        have interval summaries kept but no roll-up yet."""
        with self._write_lock:
            rows = self._writer.execute(
                "SELECT DISTINCT CAST(window_start / ? AS INTEGER) * ? AS start FROM summaries_kept "
                "WHERE window_start >= ? AND start + ? <= ? "
                "AND start NOT IN (SELECT window_start FROM summary_rollups WHERE period = ?) ORDER BY start",
                (period, period, since, period, upto, period)).fetchall()
        return [float(r[0]) for r in rows]

    def keep_rollup(self, period: int, window_start: float, window_end: float, body: bytes,
                    revise_within_s: float = 86400.0) -> None:
        """Keep a roll-up (its latest revision) until the broker has accepted it, and for
        ``revise_within_s`` after its window, for revisions."""
        with self._write_lock:
            db = self._writer
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute("INSERT OR REPLACE INTO summary_rollups VALUES (?, ?, ?, ?, 0)",
                           (period, window_start, window_end, body))
                db.execute("DELETE FROM summary_rollups WHERE window_end < ? AND published = 1",
                           (time.time() - revise_within_s,))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def kept_rollup(self, period: int, window_start: float) -> bytes | None:
        with self._write_lock:
            row = self._writer.execute("SELECT body FROM summary_rollups WHERE period = ? AND window_start = ?",
                                       (period, window_start)).fetchone()
        return row[0] if row else None

    def unpublished_rollups(self) -> list[tuple[int, float, bytes]]:
        with self._write_lock:
            return list(self._writer.execute("SELECT period, window_start, body FROM summary_rollups "
                                             "WHERE published = 0 ORDER BY window_start, period"))

    def rollup_published(self, period: int, window_start: float, body: bytes) -> None:
        """Marked published, unless a newer revision replaced it meanwhile."""
        with self._write_lock:
            self._writer.execute("UPDATE summary_rollups SET published = 1 WHERE period = ? AND window_start = ? "
                                 "AND body = ?", (period, window_start, body))

    def summary_published(self, window_start: float) -> None:
        with self._write_lock:
            self._writer.execute("DELETE FROM summaries_unpublished WHERE window_start = ?", (window_start,))

    def unpublished_summaries(self) -> list[tuple[float, bytes]]:
        with self._write_lock:
            return list(self._writer.execute("SELECT window_start, body FROM summaries_unpublished ORDER BY window_start"))
