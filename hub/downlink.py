"""What the city sends down, as the hub receives it from the bridge: verified, applied once,
kept, and answered.

Each item is checked against the city's public key (``hub.city_public_key``) here, even
though the bridge checked it too: the hub loads models, and it takes that only from the
city. An item is applied at most once (by its sequence number); a repeat is answered with
the first answer. Notices are kept for staff (``/api/notices``); a configuration change
applies from the next summary window on; a model update is written to its own folder
under ``downlink_dir``, loaded (which checks its sha256 and features again) and swapped in.
"""

import json
import logging
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from contract.downlink import (ConfigChange, DownlinkAck, DownlinkItem, DownlinkRefused, ModelUpdate, Notice,
                               SignedItem, open_item)
from servicekit.sqlite import open_database

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS downlink (
    seq INTEGER PRIMARY KEY, kind TEXT NOT NULL, item TEXT NOT NULL, status TEXT NOT NULL, reason TEXT NOT NULL,
    received_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS downlink_unverified (
    at REAL NOT NULL, claimed_seq INTEGER, reason TEXT NOT NULL, item TEXT NOT NULL
);
"""


class DownlinkStore:
    """The hub's record of city items: what each was and what became of it."""

    def __init__(self, path: Path) -> None:
        self._db = open_database(path, _SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        self._db.close()

    def answered(self, seq: int) -> DownlinkAck | None:
        with self._lock:
            row = self._db.execute("SELECT status, reason, received_at FROM downlink WHERE seq = ?", (seq,)).fetchone()
        return DownlinkAck(seq=seq, status=row[0], reason=row[1], at=row[2]) if row else None

    def record(self, seq: int, kind: str, item: str, ack: DownlinkAck) -> None:
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO downlink VALUES (?, ?, ?, ?, ?, ?)",
                             (seq, kind, item, ack.status, ack.reason, ack.at))

    def unverified(self, at: float, claimed_seq: int | None, reason: str, item: str) -> None:
        """An item that failed verification: kept for a person, but never in the place of the
        genuine item of that number (a forgery must not block it)."""
        with self._lock:
            self._db.execute("INSERT INTO downlink_unverified VALUES (?, ?, ?, ?)",
                             (at, claimed_seq, reason[:500], item[:4000]))

    def unverified_items(self, limit: int = 100) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT at, claimed_seq, reason FROM downlink_unverified ORDER BY at DESC LIMIT ?",
                                    (limit,)).fetchall()
        return [{"at": a, "claimed_seq": s, "reason": r} for a, s, r in rows]

    def items(self, kind: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        sql = "SELECT seq, kind, item, status, reason, received_at FROM downlink"
        args: tuple[Any, ...] = ()
        if kind:
            sql += " WHERE kind = ?"
            args = (kind,)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY seq DESC LIMIT ?", (*args, limit)).fetchall()
        out = []
        for seq, k, item, status, reason, at in rows:
            doc = json.loads(item) if item.startswith("{") else {}
            out.append({"seq": seq, "kind": k, "status": status, "reason": reason, "received_at": at,
                        "issued_at": doc.get("issued_at"), "expires_at": doc.get("expires_at"),
                        "body": doc.get("body", {})})
        return out

    def latest_config(self) -> ConfigChange | None:
        """The last configuration change applied (it outlives a restart)."""
        with self._lock:
            row = self._db.execute("SELECT item FROM downlink WHERE kind = 'config' AND status = 'applied' "
                                   "ORDER BY seq DESC LIMIT 1").fetchone()
        return DownlinkItem.model_validate_json(row[0]).body if row else None  # type: ignore[return-value]

    def latest_model_dirs(self, root: Path) -> dict[str, Path]:
        """The folder of the last model the city sent and the hub applied, by model name."""
        with self._lock:
            rows = self._db.execute("SELECT item FROM downlink WHERE kind = 'model' AND status = 'applied' "
                                    "ORDER BY seq").fetchall()
        folders: dict[str, Path] = {}
        for (text,) in rows:
            try:  # a row an older hub applied under looser rules is passed over, not trusted
                item = DownlinkItem.model_validate_json(text)
                assert isinstance(item.body, ModelUpdate)
                folders[item.body.name] = model_folder(root, item)
            except (ValidationError, DownlinkRefused) as exc:
                log.error("an applied model item is no longer valid, its folder is not used: %s", exc)
        return folders


def model_folder(root: Path, item: DownlinkItem) -> Path:
    """One folder per item: a later item (even with the same file) never touches a folder in use.
    The item's name and version are validated where it is parsed (contract.downlink); the
    folder is checked again to lie inside ``root``."""
    assert isinstance(item.body, ModelUpdate)
    return inside(root, root / item.body.name / f"{item.seq:06d}-{item.body.version}")


def inside(root: Path, path: Path) -> Path:
    """``path``, once resolved, if it lies strictly inside ``root``; DownlinkRefused otherwise."""
    resolved, base = path.resolve(), root.resolve()
    if resolved == base or not resolved.is_relative_to(base):
        raise DownlinkRefused(f"{path} is not inside the model store {root}")
    return resolved


class DownlinkHandler:
    """Verify, apply and answer one city item. ``apply_config`` and ``load_model`` are the
    hub's: the first takes a ConfigChange, the second a model's name and folder (raising on
    a model that does not load)."""

    def __init__(self, community: str, public_key: str, store: DownlinkStore, model_root: Path,
                 apply_config: Callable[[ConfigChange], None], load_model: Callable[[str, Path], str]) -> None:
        self.community = community
        self.public_key = public_key
        self.store = store
        self.model_root = model_root
        self.apply_config = apply_config
        self.load_model = load_model
        self.counts = {"applied": 0, "refused": 0, "repeated": 0, "unreadable": 0}

    def handle(self, raw: bytes) -> DownlinkAck | None:
        """The answer to send upward; None for bytes with no sequence number to answer to
        (logged and counted: nobody could be told)."""
        try:
            signed = SignedItem.model_validate_json(raw)
        except ValidationError as exc:
            self.counts["unreadable"] += 1
            log.error("downlink message is not a signed item, dropped unanswered: %s", exc.errors()[0]["msg"])
            return None
        seq = _claimed_seq(signed.item)
        if seq is None:
            self.counts["unreadable"] += 1
            log.error("downlink item without a sequence number, dropped unanswered")
            return None
        now = time.time()
        try:
            if not self.public_key:
                raise DownlinkRefused("hub.city_public_key is not set: no city item can be verified")
            item, blob = open_item(self.public_key, signed, self.community, now)
        except DownlinkRefused as exc:
            self.counts["refused"] += 1
            log.error("city item %d refused before it was read: %s", seq, exc)
            self.store.unverified(now, seq, str(exc), signed.item)
            return DownlinkAck(seq=seq, status="refused", reason=str(exc)[:500], at=now)
        earlier = self.store.answered(item.seq)
        if earlier is not None:
            self.counts["repeated"] += 1
            return earlier
        try:
            self._apply(item, blob)
        except DownlinkRefused as exc:
            ack = DownlinkAck(seq=item.seq, status="refused", reason=str(exc)[:500], at=now)
            self.counts["refused"] += 1
            log.error("city item %d (%s) refused: %s", item.seq, item.body.kind, exc)
        else:
            ack = DownlinkAck(seq=item.seq, status="applied", at=now)
            self.counts["applied"] += 1
            log.warning("city item %d (%s) applied", item.seq, item.body.kind)
        self.store.record(item.seq, item.body.kind, signed.item, ack)
        return ack

    def _apply(self, item: DownlinkItem, blob: bytes) -> None:
        body = item.body
        if isinstance(body, Notice):
            log.warning("notice from the city (%s): %s", body.level, body.title)
        elif isinstance(body, ConfigChange):
            self.apply_config(body)
        elif isinstance(body, ModelUpdate):
            file_name = str(body.manifest.get("file", "model.onnx"))
            if "/" in file_name or "\\" in file_name or file_name.startswith(".") or file_name == "manifest.json":
                raise DownlinkRefused(f"model manifest names an unsafe file {file_name!r}")
            folder = model_folder(self.model_root, item)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / file_name).write_bytes(blob)
            (folder / "manifest.json").write_text(json.dumps(body.manifest, ensure_ascii=False, indent=2))
            try:
                self.load_model(body.name, folder)
            except Exception as exc:  # ModelError, onnxruntime's own: the running model stays
                shutil.rmtree(inside(self.model_root, folder), ignore_errors=True)
                raise DownlinkRefused(f"model {body.version} does not load: {exc}") from None


def _claimed_seq(item: str) -> int | None:
    """The sequence number an (unverified) item claims: only to address the answer."""
    try:
        seq = json.loads(item).get("seq")
    except (ValueError, AttributeError):
        return None
    return seq if isinstance(seq, int) and not isinstance(seq, bool) and seq >= 1 else None

