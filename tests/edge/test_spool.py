"""The disk spool: order, acknowledgement, restart, bounds and full policies, age, torn tails."""

from pathlib import Path

import pytest

from edge.spool import Spool


def _fill(spool: Spool, n: int, start: int = 0, now: float = 1000.0) -> None:
    for i in range(start, start + n):
        assert spool.append(f"t/{i}", f"payload-{i:06d}".encode(), now=now)


def _drain(spool: Spool, batch: int = 7) -> list[str]:
    out = []
    while records := spool.read(batch):
        out += [r.topic for r in records]
        spool.commit(records[-1].after, len(records))
    return out


@pytest.mark.integration
def test_records_come_back_in_order_and_survive_a_restart(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_bytes=512, max_bytes=1 << 20)
    _fill(spool, 50)
    first = spool.read(10)
    spool.commit(first[-1].after, 10)
    spool.read(5)  # read but never acknowledged: must come back after a restart
    spool.close()
    again = Spool(tmp_path, segment_bytes=512, max_bytes=1 << 20)
    assert again.depth == 40
    assert _drain(again) == [f"t/{i}" for i in range(10, 50)]
    assert again.depth == 0 and again.counters["acknowledged"] == 40
    again.close()
    assert len(list(tmp_path.glob("seg-*.log"))) <= 2  # acknowledged segments are deleted


@pytest.mark.integration
def test_full_drop_oldest_counts_what_it_dropped(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_bytes=400, max_bytes=1200, full_policy="drop_oldest")
    _fill(spool, 100)
    assert spool.size_bytes <= 1200
    kept = _drain(spool, 100)
    assert spool.counters["dropped_full"] + len(kept) == 100
    assert kept == [f"t/{i}" for i in range(100 - len(kept), 100)]  # the newest survive, in order
    assert spool.counters["dropped_full"] > 0


@pytest.mark.integration
def test_full_refuse_newest_keeps_the_oldest(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_bytes=400, max_bytes=1200, full_policy="refuse_newest")
    accepted = sum(spool.append(f"t/{i}", b"x" * 20, now=1000.0) for i in range(100))
    assert spool.counters["refused_full"] == 100 - accepted > 0
    assert _drain(spool, 100) == [f"t/{i}" for i in range(accepted)]


@pytest.mark.integration
def test_records_older_than_max_age_are_dropped_and_counted(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_bytes=300, max_bytes=1 << 20, max_age_s=60)
    _fill(spool, 20, now=1000.0)
    _fill(spool, 5, start=20, now=1100.0)  # the first 20 are now 100 s old
    assert spool.counters["dropped_age"] > 0
    left = _drain(spool, 100)
    assert left[-5:] == [f"t/{i}" for i in range(20, 25)]
    assert spool.counters["dropped_age"] + len(left) == 25


@pytest.mark.integration
def test_a_torn_tail_is_cut_and_counted(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    _fill(spool, 3)
    spool.close()
    seg = sorted(tmp_path.glob("seg-*.log"))[-1]
    seg.write_bytes(seg.read_bytes()[:-4])  # power cut in the middle of the last record
    again = Spool(tmp_path)
    assert again.counters["torn"] == 1 and again.depth == 2
    assert _drain(again) == ["t/0", "t/1"]
    _fill(again, 1, start=3)
    assert _drain(again) == ["t/3"]


@pytest.mark.unit
def test_report_by_exception_deadband_and_max_interval() -> None:
    from edge.reporting import ReportFilter

    f = ReportFilter({"t": 0.5}, max_report_s=60)
    assert f.due({"t": 20.0}, now=0) == {"t": 20.0}
    assert f.due({"t": 20.4}, now=1) == {}  # within the deadband
    assert f.due({"t": 20.6}, now=2) == {"t": 20.6}  # moved beyond it (from the last reported 20.0)
    assert f.due({"t": 20.6}, now=61) == {}
    assert f.due({"t": 20.6}, now=62) == {"t": 20.6}  # unchanged, but max_report_s passed
    assert f.suppressed == 2
    every = ReportFilter({"t": 0.5}, max_report_s=60, every_poll=True)
    assert every.due({"t": 1.0}, 0) == every.due({"t": 1.0}, 1) == {"t": 1.0}
