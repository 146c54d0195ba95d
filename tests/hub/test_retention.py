"""Retention and downsampling: raw readings roll up to 1-minute and 1-hour aggregates, then
expire per category; late (replayed) rows merge into buckets already rolled up."""

from pathlib import Path

import pytest

from hub.store import DeadLetter, HubStore, TelemetryRow

pytestmark = pytest.mark.integration

DAY = 86400.0
NOW = 1_800_000_000.0  # a fixed "now", on a whole hour


def _rows(start: float, n: int, step: float, boot: str = "r") -> list[TelemetryRow]:
    return [TelemetryRow(start + i * step, "b1-th-01", "gw-b1", i + 1, False, (("temperature", 20.0 + i % 3),), boot)
            for i in range(n)]


def test_roll_up_then_expire(tmp_path: Path) -> None:
    store = HubStore(tmp_path / "hub.sqlite3")
    old = NOW - 10 * DAY  # past the 7-day raw retention
    store.write(_rows(old, 120, 1.0), [], [DeadLetter(NOW - 40 * DAY, "t", "schema", "", b"x", 1)],
                births=[("gw-b1", "r", "edge/1", old)])
    store.write(_rows(NOW - 600, 60, 1.0, boot="recent"), [], [])
    assert store.roll_up(60) == 3  # two old minutes, one recent minute
    assert store.roll_up(60) == 0  # nothing new since
    assert store.roll_up(3600) == 2
    minutes = store.rollup(60, "b1-th-01", "temperature", None, 10)
    assert [m["count"] for m in minutes] == [60, 60, 60]
    assert minutes[-1]["min"] == 20.0 and minutes[-1]["max"] == 22.0 and minutes[-1]["mean"] == pytest.approx(21.0)
    deleted = store.expire(NOW - 7 * DAY, {60: NOW - 90 * DAY, 3600: NOW - 730 * DAY}, NOW - 30 * DAY)
    assert deleted["telemetry"] == 120 and deleted["dead_letters"] == 1
    assert deleted["gateway_runs"] == 0  # among the newest 10,000 the hub restores: kept
    assert store.counts()["telemetry_rows"] == 60  # the recent minute stays raw
    assert len(store.rollup(60, "b1-th-01", None, None, 10)) == 3  # aggregates outlive raw rows
    assert store.roll_up(60) == 0 and len(store.rollup(60, "b1-th-01", None, None, 10)) == 3
    store.close()


def test_late_rows_merge_into_a_rolled_up_bucket(tmp_path: Path) -> None:
    store = HubStore(tmp_path / "hub.sqlite3")
    start = NOW - 3 * 3600
    store.write(_rows(start, 30, 1.0), [], [])
    store.roll_up(60)
    store.write(_rows(start + 30, 30, 1.0, boot="replayed"), [], [])  # the same minute, arriving late
    store.roll_up(60)
    (bucket,) = [b for b in store.rollup(60, "b1-th-01", None, None, 10) if b["bucket"] == start]
    assert bucket["count"] == 60  # merged, not a second row for the minute
    store.close()


def test_raw_rows_are_kept_until_rolled_up(tmp_path: Path) -> None:
    store = HubStore(tmp_path / "hub.sqlite3")
    store.write(_rows(NOW - 10 * DAY, 10, 1.0), [], [])
    deleted = store.expire(NOW - 7 * DAY, {60: NOW - 90 * DAY, 3600: NOW - 730 * DAY}, NOW - 30 * DAY)
    assert deleted["telemetry"] == 0  # never rolled up: kept rather than lost
    store.close()


@pytest.mark.real
async def test_the_running_hub_rolls_up_and_expires(tmp_path: Path, community, mosquitto) -> None:  # type: ignore[no-untyped-def]
    import time

    from tests.hub.conftest import serving_hub

    async with serving_hub(tmp_path, community, mosquitto) as (_, hub):
        assert hub.store is not None
        now = time.time()
        hub.store.write(_rows(now - 8 * DAY, 60, 1.0, boot="old") + _rows(now - 300, 60, 1.0, boot="new"), [], [])
        done = await hub.retention.apply(now)
        assert done["rolled_up_60s"] >= 2 and done["telemetry"] == 60
        hours = {b["bucket"] for b in hub.store.rollup(3600, "b1-th-01", "temperature", None, 10)}
        # Both the old minute and the recent one are in hourly buckets (the live readings of the
        # running community may add a bucket of their own, after an hour turns).
        assert {(now - 8 * DAY) // 3600 * 3600, (now - 300) // 3600 * 3600} <= hours


async def test_the_retention_component_asks_each_owner(tmp_path: Path) -> None:
    """Raw rows (the store's) and scored windows (scoring's) past raw retention both go."""
    from hub.retention import Retention
    from hub.scoring import ScoreLog
    from hub.settings import HubSettings

    store, windows = HubStore(tmp_path / "hub.sqlite3"), ScoreLog(tmp_path / "hub.sqlite3")
    store.write(_rows(NOW - 8 * DAY, 60, 1.0, boot="old") + _rows(NOW - 300, 60, 1.0, boot="new"), [], [])
    windows.add([(NOW - 8 * DAY, "b1-th-01", "temperature", 60, 20.0, 20.0, 20.0, 0.1, "normal"),
                 (NOW - 300, "b1-th-01", "temperature", 60, 20.0, 20.0, 20.0, 0.1, "normal")])
    retention = Retention(store, windows, HubSettings(database=tmp_path / "hub.sqlite3", retention_raw_days=7))
    done = await retention.apply(NOW)
    assert done["rolled_up_60s"] == 2 and done["rolled_up_3600s"] == 2
    assert done["telemetry"] == 60 and done["windows"] == 1
    assert [w["window_end"] for w in windows.latest(None, None, 10)] == [NOW - 300]
    assert (await retention.apply(NOW))["telemetry"] == 0  # nothing more to do
    store.close()
    windows.close()
