"""Who may change what on the hub: staff accounts with roles, login sessions, API tokens
for machine clients, and the audit trail of every state-changing request.

Roles, each including the ones before it: ``volunteer`` (a registered resident who may
claim the work orders of categories open to volunteers), ``staff`` (claim and work on
work orders),
``supervisor`` (assign, verify, change devices' desired state, send commands),
``admin`` (accounts and API tokens). Apart from them, ``kiosk`` is for the API tokens of the
community's kiosks only: it may post a resident's service request and read what a kiosk
shows (city notices, work-order categories), nothing else. Passwords are stored as scrypt hashes with a
per-account salt; session and API tokens only as SHA-256 digests, so a copy of the
database lets nobody log in.
"""

import hashlib
import hmac
import json
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from servicekit.sqlite import open_database

Role = Literal["volunteer", "staff", "supervisor", "admin", "kiosk"]
ROLES: tuple[Role, ...] = ("volunteer", "staff", "supervisor", "admin")  # each includes the ones before
TOKEN_ROLES: tuple[Role, ...] = (*ROLES, "kiosk")  # a kiosk is a machine: a token, never a person
SESSION_TTL_S = 12 * 3600  # one working shift and then some
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    display TEXT NOT NULL DEFAULT '',
    role TEXT NOT NULL CHECK (role IN ('volunteer', 'staff', 'supervisor', 'admin')),
    salt BLOB NOT NULL,
    pw_hash BLOB NOT NULL,
    created_at REAL NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS sessions (
    token_hash BLOB PRIMARY KEY,
    user TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS api_tokens (
    token_hash BLOB PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL CHECK (role IN ('volunteer', 'staff', 'supervisor', 'admin', 'kiosk')),
    created_by TEXT NOT NULL,
    created_at REAL NOT NULL,
    revoked_at REAL
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL DEFAULT '',
    detail TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS audit_target ON audit (target, at);
"""


class AccountError(ValueError):
    """A request about accounts that cannot be done, with the reason to show."""


@dataclass(frozen=True)
class Principal:
    """Who is asking: a logged-in person or a machine client's API token."""

    name: str
    role: Role
    kind: Literal["user", "token"] = "user"

    def has(self, role: Role) -> bool:
        """This role or one above it; ``kiosk`` is outside the ladder and has only itself."""
        if "kiosk" in (self.role, role):
            return self.role == role
        return ROLES.index(self.role) >= ROLES.index(role)

    @property
    def actor(self) -> str:
        return self.name if self.kind == "user" else f"token:{self.name}"


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _hash_password(password: str, salt: bytes) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, **_SCRYPT)


class Accounts:
    def __init__(self, path: Path) -> None:
        self._db = open_database(path, _SCHEMA)
        self._lock = threading.Lock()
        self._allow_kiosk_tokens()

    def _allow_kiosk_tokens(self) -> None:
        """Databases made before the kiosk role have a CHECK without it: rebuild that table."""
        sql = self._db.execute("SELECT sql FROM sqlite_master WHERE name = 'api_tokens'").fetchone()[0]
        if "'kiosk'" in sql:
            return
        table = _SCHEMA[_SCHEMA.index("CREATE TABLE IF NOT EXISTS api_tokens"):]
        table = table[:table.index(");") + 2].replace("IF NOT EXISTS api_tokens", "api_tokens_new")
        self._db.executescript(f"BEGIN; {table} INSERT INTO api_tokens_new SELECT * FROM api_tokens; "
                               "DROP TABLE api_tokens; ALTER TABLE api_tokens_new RENAME TO api_tokens; COMMIT;")

    def close(self) -> None:
        self._db.close()

    def _run(self, sql: str, args: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        with self._lock:
            return self._db.execute(sql, args)

    # -- people ------------------------------------------------------------------------

    def add_user(self, name: str, password: str, role: Role, display: str = "", *, actor: str = "cli") -> None:
        if role not in ROLES:
            raise AccountError(f"a person's role must be one of {', '.join(ROLES)} (kiosk is for API tokens)")
        if not 1 <= len(name) <= 64 or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise AccountError("name: 1-64 letters, digits, '-', '_' or '.'")
        if len(password) < 8:
            raise AccountError("password: at least 8 characters")
        salt = secrets.token_bytes(16)
        try:
            self._run("INSERT INTO users (name, display, role, salt, pw_hash, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                      (name, display, role, salt, _hash_password(password, salt), time.time()))
        except sqlite3.IntegrityError:
            raise AccountError(f"user {name!r} exists") from None
        self.audit(actor, "user.add", f"user:{name}", {"role": role})

    def set_password(self, name: str, password: str, *, actor: str) -> None:
        if len(password) < 8:
            raise AccountError("password: at least 8 characters")
        salt = secrets.token_bytes(16)
        if self._run("UPDATE users SET salt = ?, pw_hash = ? WHERE name = ?",
                     (salt, _hash_password(password, salt), name)).rowcount == 0:
            raise AccountError(f"no user {name!r}")
        self._run("DELETE FROM sessions WHERE user = ?", (name,))
        self.audit(actor, "user.password", f"user:{name}", {})

    def set_disabled(self, name: str, disabled: bool, *, actor: str) -> None:
        if self._run("UPDATE users SET disabled = ? WHERE name = ?", (int(disabled), name)).rowcount == 0:
            raise AccountError(f"no user {name!r}")
        if disabled:
            self._run("DELETE FROM sessions WHERE user = ?", (name,))
        self.audit(actor, "user.disable" if disabled else "user.enable", f"user:{name}", {})

    def users(self) -> list[dict[str, Any]]:
        rows = self._run("SELECT name, display, role, created_at, disabled FROM users ORDER BY name").fetchall()
        return [{"name": n, "display": d, "role": r, "created_at": c, "disabled": bool(x)} for n, d, r, c, x in rows]

    def login(self, name: str, password: str) -> tuple[str, Principal]:
        """A new session token for ``name``; AccountError (one message for every failure) otherwise."""
        row = self._run("SELECT role, salt, pw_hash, disabled FROM users WHERE name = ?", (name,)).fetchone()
        # Hash even for an unknown name, so that timing does not tell which names exist.
        salt, expected = (row[1], row[2]) if row else (b"\0" * 16, b"")
        ok = hmac.compare_digest(_hash_password(password, salt), expected) and row is not None and not row[3]
        if not ok:
            self.audit(name[:64], "login.failed", f"user:{name[:64]}", {})
            raise AccountError("wrong name or password")
        token = secrets.token_urlsafe(32)
        now = time.time()
        self._run("DELETE FROM sessions WHERE expires_at < ?", (now,))
        self._run("INSERT INTO sessions VALUES (?, ?, ?, ?)", (_digest(token), name, now, now + SESSION_TTL_S))
        self.audit(name, "login", f"user:{name}", {})
        return token, Principal(name, row[0])

    def logout(self, token: str) -> None:
        self._run("DELETE FROM sessions WHERE token_hash = ?", (_digest(token),))

    def session(self, token: str) -> Principal | None:
        row = self._run("SELECT u.name, u.role FROM sessions s JOIN users u ON u.name = s.user "
                        "WHERE s.token_hash = ? AND s.expires_at > ? AND u.disabled = 0",
                        (_digest(token), time.time())).fetchone()
        return Principal(row[0], row[1]) if row else None

    # -- machine clients -----------------------------------------------------------------

    def create_token(self, name: str, role: Role, *, actor: str) -> str:
        """A new API token (shown once; only its digest is kept)."""
        if role not in TOKEN_ROLES:
            raise AccountError(f"role must be one of {', '.join(TOKEN_ROLES)}")
        token = "mbt_" + secrets.token_urlsafe(32)
        try:
            self._run("INSERT INTO api_tokens (token_hash, name, role, created_by, created_at) VALUES (?, ?, ?, ?, ?)",
                      (_digest(token), name, role, actor, time.time()))
        except sqlite3.IntegrityError:
            raise AccountError(f"a token named {name!r} exists") from None
        self.audit(actor, "token.create", f"token:{name}", {"role": role})
        return token

    def revoke_token(self, name: str, *, actor: str) -> None:
        if self._run("UPDATE api_tokens SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL",
                     (time.time(), name)).rowcount == 0:
            raise AccountError(f"no active token {name!r}")
        self.audit(actor, "token.revoke", f"token:{name}", {})

    def token(self, token: str) -> Principal | None:
        row = self._run("SELECT name, role FROM api_tokens WHERE token_hash = ? AND revoked_at IS NULL",
                        (_digest(token),)).fetchone()
        return Principal(row[0], row[1], "token") if row else None

    # -- audit trail -----------------------------------------------------------------------

    def audit(self, actor: str, action: str, target: str, detail: dict[str, Any]) -> None:
        self._run("INSERT INTO audit (at, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)",
                  (time.time(), actor, action, target, json.dumps(detail, ensure_ascii=False)))

    def audit_trail(self, target: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
        sql, args = "SELECT at, actor, action, target, detail FROM audit", ()
        if target is not None:
            sql, args = sql + " WHERE target = ?", (target,)
        rows = self._run(sql + " ORDER BY id DESC LIMIT ?", (*args, limit)).fetchall()
        return [{"at": a, "actor": b, "action": c, "target": d, "detail": json.loads(e)} for a, b, c, d, e in rows]
