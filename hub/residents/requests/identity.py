"""Tickets, PINs and identities kept as keyed hashes (HMAC-SHA256 with a per-hub secret).

The secret is made on the hub's first start, next to its database (file mode 0600), and is
never in the repository: a stolen database alone does not give away a household code, a
phone number, or (6 digits being few) a PIN.
"""

import hashlib
import hmac
import os
import secrets
import unicodedata
from pathlib import Path

KEY_BYTES = 32


def load_or_create_key(path: Path) -> bytes:
    """The hub's secret at ``path``, made (0600, exclusively) if there is none yet."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = path.read_bytes()
        if len(key) != KEY_BYTES:
            raise ValueError(f"{path}: the residents' secret must be {KEY_BYTES} bytes, it has {len(key)}") from None
        return key
    key = secrets.token_bytes(KEY_BYTES)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    return key


class Identity:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def hash(self, kind: str, value: str) -> str:
        """A keyed hash of a household code or phone number (normalised: NFKC, no spaces or dashes)."""
        norm = unicodedata.normalize("NFKC", value).replace(" ", "").replace("-", "").lower()
        return hmac.new(self._key, f"{kind}:{norm}".encode(), hashlib.sha256).hexdigest()

    def pin_hash(self, ticket: str, pin: str) -> str:
        return hmac.new(self._key, f"pin:{ticket}:{pin}".encode(), hashlib.sha256).hexdigest()

    def pin_matches(self, stored: str | None, ticket: str, pin: str) -> bool:
        """Constant work whether or not there is a stored hash (an unknown ticket costs the same)."""
        given = self.pin_hash(ticket, pin)
        return hmac.compare_digest(stored or "0" * 64, given) and stored is not None


def new_pin() -> str:
    """Six random digits."""
    return f"{secrets.randbelow(10**6):06d}"
