"""Dead letters are bounded by count and bytes: the first of each reason and the newest are kept,
payloads are cut to a prefix with their length and SHA-256, and /metrics counts what went."""

import hashlib
import os
from pathlib import Path

import aiomqtt
import httpx
import pytest

from contract import topics
from contract.endpoints import MqttEndpoint
from contract.topology import Community
from hub.store import DeadLetter, HubStore
from hub.settings import DeadLetterSettings
from tests.conftest import wait_until
from tests.hub.conftest import api_token, serving_hub

QUOTA = DeadLetterSettings(max_rows=50, max_bytes=1_000_000, keep_first_per_reason=3, raw_prefix_bytes=100)


def _letter(i: int, reason: str, size: int = 60 * 1024) -> DeadLetter:
    payload = os.urandom(size)
    return DeadLetter(float(i), f"mb/v1/xihu-demo/gw-b1/d{i}/telemetry", reason, f"letter {i}", payload, size,
                      hashlib.sha256(payload).hexdigest())


@pytest.mark.integration
def test_the_store_keeps_the_first_of_each_reason_and_the_newest_within_the_quota(tmp_path: Path) -> None:
    store = HubStore(tmp_path / "hub.sqlite3", QUOTA)
    letters = [_letter(i, "oversize") for i in range(190)] + [_letter(i, "schema") for i in range(190, 200)]
    for start in range(0, 200, 20):  # in batches, as the hub's writer flushes
        store.write([], [], letters[start:start + 20])
    s = store.dead_letter_stats()
    assert s.rows == 50 and s.bytes <= QUOTA.max_bytes
    assert s.stored == {"oversize": 190, "schema": 10} and s.truncated == {"oversize": 190, "schema": 10}
    assert s.evicted == {"oversize": 150} and s.rows_by_reason == {"oversize": 40, "schema": 10}
    kept = store.dead_letters(None, 1000)
    ids = sorted(int(r["detail"].split()[1]) for r in kept)
    assert ids == [0, 1, 2, *range(153, 200)]  # the first 3 of oversize, then the newest
    newest = kept[0]
    assert newest["size"] == 60 * 1024 and newest["sha256"] == letters[199].sha256
    assert len(bytes.fromhex(newest["raw_hex"])) == 100
    store.close()

    again = HubStore(tmp_path / "hub.sqlite3", QUOTA)  # counts survive a restart
    try:
        assert again.dead_letter_stats() == s
        again.write([], [], [_letter(200, "schema")])
        assert again.dead_letter_stats().rows == 50 and again.dead_letter_stats().evicted["oversize"] == 151
    finally:
        again.close()


@pytest.mark.integration
def test_a_smaller_quota_applies_when_the_store_opens(tmp_path: Path) -> None:
    roomy = DeadLetterSettings(max_rows=1000, max_bytes=10**9, raw_prefix_bytes=70_000)
    store = HubStore(tmp_path / "hub.sqlite3", roomy)
    store.write([], [], [_letter(i, "schema") for i in range(100)])
    assert store.dead_letter_stats().bytes > 6_000_000
    store.close()
    store = HubStore(tmp_path / "hub.sqlite3", QUOTA)
    try:
        s = store.dead_letter_stats()
        assert s.bytes <= QUOTA.max_bytes and s.rows == 16 and s.evicted == {"schema": 84}
        kept = sorted(int(r["detail"].split()[1]) for r in store.dead_letters(None, 1000))
        assert kept == [*range(10), *range(94, 100)]  # the first 10 (pinned when written), the newest
    finally:
        store.close()


@pytest.mark.integration
def test_the_byte_cap_binds_before_the_row_cap(tmp_path: Path) -> None:
    store = HubStore(tmp_path / "hub.sqlite3", DeadLetterSettings(max_rows=1000, max_bytes=20_000,
                                                                  keep_first_per_reason=0, raw_prefix_bytes=1000))
    try:
        store.write([], [], [_letter(i, "oversize") for i in range(100)])
        s = store.dead_letter_stats()
        assert s.bytes <= 20_000 and 15 <= s.rows <= 20 and s.evicted["oversize"] == 100 - s.rows
    finally:
        store.close()


@pytest.mark.real
async def test_a_flood_through_mosquitto_stays_within_the_quota_and_shows_in_metrics(
        tmp_path: Path, community: Community, mosquitto: MqttEndpoint) -> None:
    topic = topics.device_telemetry("xihu-demo", "gw-b1", "b1-th-01")
    quota = {"max_rows": 10, "max_bytes": 1_000_000, "keep_first_per_reason": 2, "raw_prefix_bytes": 64}
    async with serving_hub(tmp_path, community, mosquitto, dead_letters=quota) as (url, hub), \
            httpx.AsyncClient(base_url=url, headers=api_token(hub)) as http:
        async with aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="quota-flood") as client:
            for i in range(30):
                await client.publish(topic, bytes([i]) * (70 * 1024), qos=1)  # over max_payload_bytes
            await client.publish(topic, b'{"v":1,', qos=1)

        async def all_counted() -> str | None:
            text = (await http.get("/metrics")).text
            done = ('midbrain_hub_dead_letters_stored_total{reason="oversize"} 30.0' in text
                    and 'midbrain_hub_dead_letters_stored_total{reason="invalid-json"} 1.0' in text)
            return text if done else None

        metrics = await wait_until(all_counted)
        assert "midbrain_hub_dead_letters_held_rows 10.0" in metrics
        assert 'midbrain_hub_dead_letters_evicted_total{reason="oversize"} 21.0' in metrics
        assert 'midbrain_hub_dead_letters_truncated_total{reason="oversize"} 30.0' in metrics
        assert 'midbrain_hub_dead_letters_held{reason="invalid-json"} 1.0' in metrics
        assert 'midbrain_hub_dead_letters_total{reason="oversize"} 30.0' in metrics  # every refusal still counted
        letters = (await http.get("/api/dead-letters", params={"reason": "oversize"})).json()
        assert len(letters) == 9 and all(d["size"] == 70 * 1024 for d in letters)
        assert letters[0]["sha256"] == hashlib.sha256(bytes([29]) * (70 * 1024)).hexdigest()
        assert len(bytes.fromhex(letters[0]["raw_hex"])) == 64
        assert hub.store is not None and os.path.getsize(tmp_path / "hub.sqlite3") < 2_000_000
