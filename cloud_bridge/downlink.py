"""The city's voice, carried down: fetch signed items, verify, hand them to the hub, and
carry the hub's answers back up.

State lives in the outbox's SQLite file (its own tables), so a restart resumes where it
stopped: the last item fetched, items handed to the hub and not yet answered (handed
again after ``downlink_resend_s``), and answers not yet accepted by the city.

An item whose signature does not verify against ``bridge.city_public_key`` is not handed
to the hub: the bridge answers "refused" for it, with the reason, itself.
"""

import asyncio
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
from pydantic import ValidationError

from cloud_bridge.settings import BridgeSettings
from contract.city import (COMMUNITY_HEADER, DOWNLINK_ACKS_PATH, DOWNLINK_PATH, SIGNATURE_HEADER, TIMESTAMP_HEADER,
                           downlink_request, sign)
from contract.downlink import AckBatch, DownlinkAck, DownlinkRefused, SignedItem, envelope, open_item
from servicekit.sqlite import open_database

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS downlink_items (
    seq INTEGER PRIMARY KEY, signed TEXT NOT NULL, state TEXT NOT NULL, handed_at REAL, reason TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS downlink_answers (seq INTEGER PRIMARY KEY, ack TEXT NOT NULL, sent INTEGER NOT NULL DEFAULT 0);
"""


class DownlinkState:
    def __init__(self, path: Path) -> None:
        self._db = open_database(path, _SCHEMA, synchronous="FULL")
        self._lock = threading.Lock()

    def close(self) -> None:
        self._db.close()

    def last_seq(self) -> int:
        with self._lock:
            (n,) = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM downlink_items").fetchone()
        return int(n)

    def received(self, seq: int, signed: str, state: str, reason: str = "") -> None:
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO downlink_items (seq, signed, state, reason) VALUES (?, ?, ?, ?)",
                             (seq, signed, state, reason))

    def to_hand(self, resend_s: float) -> list[tuple[int, str]]:
        """Items for the hub: never handed, or handed and unanswered for resend_s."""
        with self._lock:
            return self._db.execute("SELECT seq, signed FROM downlink_items WHERE state = 'verified' AND "
                                    "(handed_at IS NULL OR handed_at < ?) ORDER BY seq",
                                    (time.time() - resend_s,)).fetchall()

    def handed(self, seq: int) -> None:
        with self._lock:
            self._db.execute("UPDATE downlink_items SET handed_at = ? WHERE seq = ?", (time.time(), seq))

    def answer(self, ack: DownlinkAck) -> bool:
        """Keep an answer for the city (the hub's, or the bridge's own refusal); False for a
        repeat, or an answer to an item this bridge never fetched."""
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                if db.execute("SELECT 1 FROM downlink_items WHERE seq = ?", (ack.seq,)).fetchone() is None:
                    db.execute("COMMIT")
                    return False
                cur = db.execute("INSERT OR IGNORE INTO downlink_answers (seq, ack) VALUES (?, ?)",
                                 (ack.seq, ack.model_dump_json()))
                db.execute("UPDATE downlink_items SET state = 'answered' WHERE seq = ? AND state = 'verified'",
                           (ack.seq,))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return bool(cur.rowcount)

    def unsent_answers(self, limit: int = 500) -> list[DownlinkAck]:
        with self._lock:
            rows = self._db.execute("SELECT ack FROM downlink_answers WHERE sent = 0 ORDER BY seq LIMIT ?",
                                    (limit,)).fetchall()
        return [DownlinkAck.model_validate_json(r[0]) for r in rows]

    def answers_sent(self, seqs: list[int]) -> None:
        with self._lock:
            self._db.executemany("UPDATE downlink_answers SET sent = 1 WHERE seq = ?", [(s,) for s in seqs])

    def items(self, limit: int = 100) -> list[dict[str, object]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT i.seq, i.state, i.reason, i.handed_at, a.ack, a.sent FROM downlink_items i "
                "LEFT JOIN downlink_answers a ON a.seq = i.seq ORDER BY i.seq DESC LIMIT ?", (limit,)).fetchall()
        return [{"seq": s, "state": st, "reason": r, "handed_at": h, "answer": json.loads(a) if a else None,
                 "answer_sent": bool(sent)} for s, st, r, h, a, sent in rows]


class Downlinker:
    """``publish(payload)`` hands an item to the hub (QoS 1 on the community's downlink topic)."""

    def __init__(self, state: DownlinkState, settings: BridgeSettings, client: httpx.AsyncClient, community: str,
                 publish: Callable[[bytes], Awaitable[None]]) -> None:
        self.state = state
        self.settings = settings
        self.client = client
        self.community = community
        self.publish = publish
        self.key = settings.community_key.get_secret_value().encode()
        self.counts = {"fetched": 0, "refused_here": 0, "handed": 0, "answers_sent": 0, "fetch_failures": 0}

    async def fetch(self, wait: float = 0.0) -> int:
        """Take the city's new items (the city may hold the request up to ``wait`` seconds
        while it has none); how many came."""
        after = await asyncio.to_thread(self.state.last_seq)
        ts = time.time()
        params: dict[str, str | int] = {"after": after}
        if wait > 0:
            params["wait"] = f"{wait:g}"
        response = await self.client.get(DOWNLINK_PATH, params=params, timeout=wait + self.settings.http_timeout_s,
                                         headers={COMMUNITY_HEADER: self.community, TIMESTAMP_HEADER: f"{ts:.3f}",
                                                  SIGNATURE_HEADER: downlink_request(self.key, self.community, after, ts)})
        if response.status_code != 200:
            self.counts["fetch_failures"] += 1
            log.error("downlink: city answered %d: %s", response.status_code, response.text[:300])
            return 0
        items = response.json().get("items", [])
        for doc in items:
            await self._take(doc)
        return len(items)

    async def _take(self, doc: dict[str, object]) -> None:
        self.counts["fetched"] += 1
        try:
            signed = SignedItem.model_validate(doc)
            seq = int(json.loads(signed.item)["seq"])
        except (ValidationError, ValueError, KeyError, TypeError) as exc:
            log.error("downlink: an item the city sent cannot be read (%s); skipped", exc)
            return
        text = json.dumps(signed.model_dump(), separators=(",", ":"))
        try:
            open_item(self.settings.city_public_key, signed, self.community)
        except DownlinkRefused as exc:
            self.counts["refused_here"] += 1
            log.error("downlink: item %d refused, not handed to the hub: %s", seq, exc)
            await asyncio.to_thread(self.state.received, seq, text, "refused", str(exc))
            await asyncio.to_thread(self.state.answer, DownlinkAck(seq=seq, status="refused", reason=str(exc)[:500],
                                                                   at=time.time()))
            return
        await asyncio.to_thread(self.state.received, seq, text, "verified")

    async def hand_over(self) -> None:
        for seq, text in await asyncio.to_thread(self.state.to_hand, self.settings.downlink_resend_s):
            await self.publish(envelope(SignedItem.model_validate_json(text)))
            await asyncio.to_thread(self.state.handed, seq)
            self.counts["handed"] += 1

    async def send_answers(self) -> None:
        answers = await asyncio.to_thread(self.state.unsent_answers)
        if not answers:
            return
        body = AckBatch(community=self.community, acks=tuple(answers)).model_dump_json().encode()
        response = await self.client.post(DOWNLINK_ACKS_PATH, content=body, headers={
            "content-type": "application/json", COMMUNITY_HEADER: self.community,
            SIGNATURE_HEADER: sign(self.key, body)})
        if response.status_code == 200:
            await asyncio.to_thread(self.state.answers_sent, [a.seq for a in answers])
            self.counts["answers_sent"] += len(answers)
        else:
            log.error("downlink: city did not take %d answers: %d %s", len(answers), response.status_code,
                      response.text[:300])
