"""Open the embedded SQLite databases the services keep, all in the same way."""

import sqlite3
from pathlib import Path
from typing import Literal


def open_database(path: Path, schema: str, *, synchronous: Literal["NORMAL", "FULL"] = "NORMAL") -> sqlite3.Connection:
    """A WAL-mode connection in autocommit mode (transactions are explicit), schema applied.

    ``synchronous=FULL`` where an acknowledged write must survive power loss (outboxes);
    ``NORMAL`` (durable across process crashes) elsewhere.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={synchronous}")
    db.execute("PRAGMA busy_timeout=5000")
    db.executescript(schema)
    return db
