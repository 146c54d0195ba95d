"""The outbox's bounds: size (with its full policy), age (TTL) and priority, with counters."""

import asyncio
import time
from pathlib import Path

import pytest

from cloud_bridge.outbox import PRIORITY_ALERT, Outbox, OutboxFull
from contract.city import CommunitySummary
from contract.endpoints import MqttEndpoint
from tests.city_and_bridge import publish_summaries, running_bridge, serving_city
from tests.conftest import wait_until

C = "xihu-demo"


def _s(i: int) -> CommunitySummary:
    return CommunitySummary(key=f"c1:{i}", community="c1", window_start=i, window_end=i + 1, devices=1, online=1,
                            readings=i)


@pytest.mark.unit
def test_a_full_outbox_that_refuses_keeps_what_it_has_and_counts_the_refusal(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.sqlite3", max_summaries=3, full_policy="refuse")
    for i in range(3):
        assert outbox.add(_s(i))
    outbox.seal("c1", 2)  # sealed ones count too
    with pytest.raises(OutboxFull, match="holds 3 summaries"):
        outbox.add(_s(3))
    stats = outbox.stats()
    assert stats["full_refused"] == 1 and stats["pending"] + stats["in_batches"] == 3 and stats["produced"] == 3
    batch = outbox.next_batch()
    assert batch is not None
    outbox.acknowledged(batch.key)  # room again: the refused summary is taken when it comes back
    assert outbox.add(_s(3)) and outbox.stats()["produced"] == 4
    outbox.close()


@pytest.mark.unit
def test_a_full_outbox_that_drops_drops_the_oldest_routine_summary_and_says_which(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.sqlite3", max_summaries=3, full_policy="drop_oldest")
    assert outbox.add(_s(0), PRIORITY_ALERT)
    assert outbox.add(_s(1)) and outbox.add(_s(2))
    assert outbox.add(_s(3))  # drops c1:1, the oldest routine one (c1:0 is an alert window)
    assert outbox.add(_s(4))  # drops c1:2
    assert [d["key"] for d in outbox.discarded()] == ["c1:2", "c1:1"] and {
        d["reason"] for d in outbox.discarded()} == {"full"}
    stats = outbox.stats()
    assert stats["dropped_full"] == 2 and stats["pending"] == 3 and stats["full_refused"] == 0
    outbox.close()


@pytest.mark.unit
def test_summaries_older_than_the_ttl_are_discarded_unsent_and_counted(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.sqlite3", ttl_s=0.3)
    outbox.add(_s(0))
    outbox.add(_s(1))
    outbox.seal("c1", 1)  # c1:0 in a batch, c1:1 pending
    time.sleep(0.4)
    outbox.add(_s(2))  # young
    assert outbox.seal("c1", 10) == 1  # only c1:2 goes into a batch
    stats = outbox.stats()
    assert stats["expired"] == 2 and stats["pending"] == 0 and stats["in_batches"] == 1
    assert sorted(d["reason"] for d in outbox.discarded()) == ["ttl", "ttl-batch"]
    batch = outbox.next_batch()
    assert batch is not None and b"c1:2" in batch.body and b"c1:0" not in batch.body
    outbox.close()


@pytest.mark.unit
def test_alert_windows_are_sealed_and_sent_before_routine_ones(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.sqlite3")
    for i in range(4):
        outbox.add(_s(i))
    outbox.seal("c1", 2)  # a routine batch waits already
    outbox.add(_s(10), PRIORITY_ALERT)
    outbox.seal("c1", 10)
    outbox.seal("c1", 10)
    batch = outbox.next_batch()
    assert batch is not None and b"c1:10" in batch.body and b"c1:2" not in batch.body
    outbox.close()


@pytest.mark.unit
def test_routine_summaries_linger_for_company_and_alert_ones_do_not(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.sqlite3")
    outbox.add(_s(0))
    outbox.add(_s(1))
    assert outbox.seal("c1", 3, linger_s=300) == 0  # two routine ones, fresh: they wait
    outbox.add(_s(2), PRIORITY_ALERT)
    assert outbox.seal("c1", 3, linger_s=300) == 1  # an alert window goes at once, alone
    assert outbox.seal("c1", 3, linger_s=300) == 0
    outbox.add(_s(3))
    assert outbox.seal("c1", 3, linger_s=300) == 3  # batch_max reached
    outbox.add(_s(4))
    assert outbox.seal("c1", 3, linger_s=300) == 0
    assert outbox.seal("c1", 3, linger_s=0) == 1  # waited long enough (or the bridge is draining)
    outbox.close()


@pytest.mark.real
async def test_a_bridge_whose_outbox_is_full_loses_nothing_while_the_city_is_down(
        tmp_path: Path, mosquitto: MqttEndpoint) -> None:
    """max_summaries 5, the city down, 12 summaries from the hub: 5 are kept, the rest stay
    with the broker; once the city is back all 12 arrive, each once."""
    endpoint = mosquitto.model_copy(update={"reconnect_initial_s": 0.1, "reconnect_max_s": 0.3})
    settings = {"outbox": tmp_path / "outbox.sqlite3", "community_key": "k", "city_url": "http://127.0.0.1:9",
                "max_summaries": 5, "retry_initial_s": 0.1, "retry_max_s": 0.3, "batch_max": 2}
    async with running_bridge(C, endpoint, **settings) as bridge:
        await publish_summaries(mosquitto, C, range(12))
        await wait_until(lambda: bridge.stats()["full_refused"] >= 1, timeout=15)
        held = bridge.stats()
        assert held["pending"] + held["in_batches"] == 5 and held["produced"] == 5

    # The city comes up; a bridge pointed at it (a restart, as after a config change) drains all.
    async with serving_city(tmp_path, {C: b"k"}) as (server, store), \
            running_bridge(C, endpoint, **{**settings, "city_url": server.url}) as bridge:
        await wait_until(lambda: store.stats()["summaries"] == 12, timeout=30)
        await asyncio.sleep(0.3)
        assert store.stats()["summaries"] == 12 and bridge.stats()["produced"] == 12
        assert bridge.stats()["acknowledged"] == 12 and bridge.stats()["dropped_full"] == 0
