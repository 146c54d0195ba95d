"""Open the embedded SQLite databases the services keep, all in the same way."""

import sqlite3
from pathlib import Path
from typing import Literal


def open_database(path: Path, schema: str, *, synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
                  page_size: int | None = None) -> sqlite3.Connection:
    """A WAL-mode connection in autocommit mode (transactions are explicit), schema applied.

    ``synchronous=FULL`` where an acknowledged write must survive power loss (outboxes);
    ``NORMAL`` (durable across process crashes) elsewhere. ``page_size`` applies to a new
    database only (an existing one keeps its own).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    if page_size is not None:
        db.execute(f"PRAGMA page_size={int(page_size)}")  # a no-op once the database has content
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={synchronous}")
    db.execute("PRAGMA busy_timeout=5000")
    db.executescript(schema)
    return db
