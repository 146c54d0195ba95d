"""Batches are signed with the community key; the egress log is chained and signed."""

import asyncio
import sqlite3
from pathlib import Path

import pytest

from cloud_bridge.delivery import Deliverer, http_client
from cloud_bridge.outbox import Outbox
from cloud_bridge.settings import BridgeSettings
from contract.city import CommunitySummary
from servicekit.http import HttpServer
from simulators.city.app import create_app
from simulators.city.store import CityStore

pytestmark = pytest.mark.real


def _summary(i: int) -> CommunitySummary:
    return CommunitySummary(key=f"c1:{i}", community="c1", window_start=i, window_end=i + 1, devices=3, online=3,
                            readings=i)


async def test_a_wrong_key_keeps_the_batch_and_the_right_key_delivers_it(tmp_path: Path) -> None:
    store = CityStore(tmp_path / "city.sqlite3")
    server = HttpServer(create_app(store, {"c1": b"the-city-knows-this"}), "127.0.0.1", 0)
    serving = asyncio.create_task(server.serve())
    await server.started()
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    try:
        for i in range(40):  # enough to pass gzip_min_bytes: the signed body goes compressed
            outbox.add(_summary(i))
        outbox.seal("c1", 100)
        wrong = BridgeSettings(city_url=server.url, community_key="an-old-key")
        async with http_client(wrong) as client:
            deliverer = Deliverer.http(outbox, wrong, client, "c1")
            assert await deliverer.deliver_one() is False
        assert deliverer.signature_refused == 1 and outbox.stats()["batches_waiting"] == 1  # kept, not dropped
        assert store.stats()["refused_batches"] == 1

        right = BridgeSettings(city_url=server.url, community_key="the-city-knows-this")
        async with http_client(right) as client:
            deliverer = Deliverer.http(outbox, right, client, "c1")
            assert await deliverer.deliver_one() is True
        assert store.stats()["summaries"] == 40 and outbox.stats()["acknowledged"] == 40
        body = outbox.egress_log()[0]
        assert deliverer.bytes_sent < body["bytes"]  # gzip on the wire  # type: ignore[operator]
    finally:
        server.stop()
        await serving
        outbox.close()
        store.close()


def test_the_egress_log_shows_what_left_and_any_change_to_it(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    key = b"community-key"
    for n in range(3):
        for i in range(n * 10, n * 10 + 4):
            outbox.add(_summary(i))
        outbox.seal("c1", 100)
        batch = outbox.next_batch()
        assert batch is not None
        outbox.log_sent(batch, "https://city.example/api/v1/batches", key)
        outbox.log_sent(batch, "https://city.example/api/v1/batches", key)  # a retry is not a new entry
        outbox.acknowledged(batch.key)
    log = outbox.egress_log()
    assert [e["seq"] for e in log] == [3, 2, 1] and all(e["acknowledged_at"] for e in log)
    assert log[2]["summaries"] == ["c1:0", "c1:1", "c1:2", "c1:3"] and log[2]["prev_hash"] == ""
    assert log[1]["prev_hash"] == log[2]["entry_hash"]
    assert outbox.verify_egress_log(key) == {"ok": True, "entries": 3, "checked": 3}
    assert outbox.verify_egress_log(b"another key")["problem"] == "signature"
    outbox.close()

    db = sqlite3.connect(tmp_path / "outbox.sqlite3")
    db.execute("UPDATE egress_log SET summaries = ? WHERE seq = 1", ('["c1:0"]',))  # hide what left
    db.commit()
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    assert outbox.verify_egress_log(key) == {"ok": False, "entries": 3, "checked": 0, "first_bad_seq": 1,
                                             "problem": "hash"}
    outbox.close()
    db.execute("DELETE FROM egress_log WHERE seq = 1")  # or remove an entry altogether
    db.commit()
    db.close()
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    assert outbox.verify_egress_log(key)["problem"] == "chain"
    outbox.close()


async def test_a_batch_sealed_under_a_replaced_key_is_signed_again_when_sent(tmp_path: Path) -> None:
    """Batches are compressed and signed when sealed; after the community key changes, those
    still waiting go out signed with the new one (the city knows only that)."""
    store = CityStore(tmp_path / "city.sqlite3")
    server = HttpServer(create_app(store, {"c1": b"the-new-key"}), "127.0.0.1", 0)
    serving = asyncio.create_task(server.serve())
    await server.started()
    outbox = Outbox(tmp_path / "outbox.sqlite3", signing_key=b"the-old-key", gzip_min_bytes=1024)
    try:
        for i in range(40):
            outbox.add(_summary(i))
        outbox.seal("c1", 100)
        sealed = outbox.next_batch()
        assert sealed is not None and sealed.encoding == "gzip" and sealed.signature
        assert len(sealed.payload) < sealed.body_bytes == len(sealed.body)  # stored as it will be sent
        settings = BridgeSettings(city_url=server.url, community_key="the-new-key")
        async with http_client(settings) as client:
            deliverer = Deliverer.http(outbox, settings, client, "c1")
            assert await deliverer.deliver_one() is True
        assert store.stats()["summaries"] == 40 and store.stats()["refused_batches"] == 0
        assert deliverer.bytes_sent == len(sealed.payload)  # the stored bytes, not compressed again
    finally:
        server.stop()
        await serving
        outbox.close()
        store.close()


async def test_a_batch_sealed_by_an_older_bridge_is_still_delivered(tmp_path: Path) -> None:
    """Outboxes written before batches were stored compressed and signed: the batch is read,
    compressed and signed at sending."""
    path = tmp_path / "outbox.sqlite3"
    outbox = Outbox(path, gzip_min_bytes=None)
    for i in range(40):
        outbox.add(_summary(i))
    outbox.seal("c1", 100)
    (key, body) = outbox._db.execute("SELECT key, body FROM batches").fetchone()
    outbox.close()
    db = sqlite3.connect(path)  # as an older bridge left it: the JSON as text, no signature, no hash
    db.execute("UPDATE batches SET body = ?, encoding = '', signature = '', key_id = '', body_sha256 = '', "
               "body_bytes = 0, summary_keys = '' WHERE key = ?", (body.decode() if isinstance(body, bytes) else body,
                                                                    key))
    db.commit()
    db.close()

    store = CityStore(tmp_path / "city.sqlite3")
    server = HttpServer(create_app(store, {"c1": b"k"}), "127.0.0.1", 0)
    serving = asyncio.create_task(server.serve())
    await server.started()
    outbox = Outbox(path, signing_key=b"k")
    try:
        settings = BridgeSettings(city_url=server.url, community_key="k")
        async with http_client(settings) as client:
            deliverer = Deliverer.http(outbox, settings, client, "c1")
            assert await deliverer.deliver_one() is True
        assert store.stats()["summaries"] == 40
        entry = outbox.egress_log()[0]
        assert entry["summaries"][:2] == ["c1:0", "c1:1"] and entry["bytes"] > deliverer.bytes_sent  # type: ignore[index,operator]
    finally:
        server.stop()
        await serving
        outbox.close()
        store.close()
