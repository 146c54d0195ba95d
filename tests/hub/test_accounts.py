"""hub.accounts on its own: the kiosk role outside the ladder, and a database made before it."""

import hashlib
import sqlite3
from pathlib import Path

import pytest

from hub.accounts import AccountError, Accounts, Principal

pytestmark = pytest.mark.unit


def test_kiosk_is_outside_the_ladder() -> None:
    kiosk, admin = Principal("k", "kiosk", "token"), Principal("a", "admin")
    assert kiosk.has("kiosk") and not kiosk.has("volunteer") and not kiosk.has("staff")
    assert not admin.has("kiosk")  # an admin is let in where a kiosk is by the route's own list, not by rank


def test_a_database_from_before_the_kiosk_role_takes_kiosk_tokens_and_keeps_its_own(tmp_path: Path) -> None:
    db = tmp_path / "hub.sqlite3"
    old = sqlite3.connect(db)
    old.executescript("""CREATE TABLE api_tokens (token_hash BLOB PRIMARY KEY, name TEXT NOT NULL UNIQUE,
        role TEXT NOT NULL CHECK (role IN ('volunteer', 'staff', 'supervisor', 'admin')),
        created_by TEXT NOT NULL, created_at REAL NOT NULL, revoked_at REAL);""")
    before = "mbt_made-before-kiosks"
    old.execute("INSERT INTO api_tokens VALUES (?, 'ops', 'supervisor', 'root', 0, NULL)",
                (hashlib.sha256(before.encode()).digest(),))
    old.commit()
    old.close()
    accounts = Accounts(db)  # rebuilds the table with the kiosk role, keeping what it held
    try:
        kiosk = accounts.create_token("kiosk/b1", "kiosk", actor="t")
        assert accounts.token(before) == Principal("ops", "supervisor", "token")
        assert accounts.token(kiosk) == Principal("kiosk/b1", "kiosk", "token")
        with pytest.raises(AccountError, match="kiosk is for API tokens"):
            accounts.add_user("lobby", "a-long-password", "kiosk")
    finally:
        accounts.close()
