"""The durable outbox on a real SQLite file, across reopenings."""

import json
from pathlib import Path

import pytest

from cloud_bridge.outbox import Outbox
from contract.city import CommunitySummary

pytestmark = pytest.mark.integration


def _summary(i: int) -> CommunitySummary:
    return CommunitySummary(key=f"c1:{i}", community="c1", window_start=i, window_end=i + 60,
                            devices=3, online=3, readings=10)


def test_a_summary_is_produced_once_and_batches_survive_a_restart(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3")
    assert [box.add(_summary(i)) for i in (1, 2, 3)] == [True, True, True]
    assert box.add(_summary(2)) is False  # redelivered by the broker: not produced twice
    assert box.seal("c1", batch_max=2) == 2
    first = box.next_batch()
    assert first is not None
    box.close()

    box = Outbox(tmp_path / "o.sqlite3")  # after a restart the same batch, same key, same bytes
    again = box.next_batch()
    assert again == first
    assert [s["key"] for s in json.loads(again.body)["summaries"]] == ["c1:1", "c1:2"]
    box.acknowledged(again.key)
    assert box.seal("c1", batch_max=10) == 1
    last = box.next_batch()
    assert last is not None and last.key != first.key
    box.acknowledged(last.key)
    assert box.next_batch() is None
    assert box.stats() == {"produced": 3, "acknowledged": 3, "rejected": 0, "pending": 0, "in_batches": 0,
                           "batches_waiting": 0, "batches_acknowledged": 2, "oldest_age_s": 0.0,
                           "expired": 0, "dropped_full": 0, "full_refused": 0, "superseded": 0}
    box.close()


def test_a_refused_batch_is_kept_aside_and_counted(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3")
    box.add(_summary(1))
    box.seal("c1", 10)
    batch = box.next_batch()
    assert batch is not None
    box.failed(batch.key, "HTTP 503")
    assert box.next_batch().attempts == 1  # type: ignore[union-attr]
    box.reject(batch.key, "HTTP 422: summaries.0.devices: Input should be greater than or equal to 0")
    assert box.next_batch() is None
    assert box.stats()["rejected"] == 1
    box.close()


def test_produced_keys_are_remembered_for_a_bounded_time(tmp_path: Path) -> None:
    import time

    box = Outbox(tmp_path / "o.sqlite3", remember_keys_s=0.2)
    assert box.add(_summary(1)) is True
    assert box.add(_summary(1)) is False  # a redelivery soon after
    box.seal("c1", 10)
    time.sleep(0.3)
    box.seal("c1", 10)  # prunes keys past their time
    assert box.add(_summary(1)) is True  # long forgotten: produced again (the city deduplicates by key too)
    box.close()


def test_a_revision_is_a_new_summary_under_the_same_key(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3")

    def rev(i: int, revision: int, readings: int) -> CommunitySummary:
        return _summary(i).model_copy(update={"revision": revision, "readings": readings})

    assert box.add(rev(1, 0, 10)) is True
    assert box.add(rev(1, 1, 11)) is True  # not yet sealed: the revision takes the first one's place
    assert box.add(rev(1, 0, 10)) is False  # the first, redelivered: already superseded
    assert box.seal("c1", batch_max=10) == 1
    batch = box.next_batch()
    assert batch is not None
    assert [(s["key"], s["revision"], s["readings"]) for s in json.loads(batch.body)["summaries"]] == [("c1:1", 1, 11)]
    box.acknowledged(batch.key)
    assert box.add(rev(1, 2, 12)) is True  # after delivery: sent again as revision 2
    assert box.add(rev(1, 2, 12)) is False
    assert box.seal("c1", batch_max=10) == 1
    batch = box.next_batch()
    assert batch is not None and [s["revision"] for s in json.loads(batch.body)["summaries"]] == [2]
    assert (box.stats()["produced"], box.stats()["superseded"]) == (3, 1)  # revision 0 was never sent
