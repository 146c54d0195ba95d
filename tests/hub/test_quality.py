"""Quality end to end at the hub's ingest (pure: no broker, no store): a bad point is stored
and shown, left out of windows, scores, rules and aggregates, and counted; and the hub asks
a gateway for a rebirth when it loses the thread of its agent run."""

import json

import pytest

from contract import topics
from contract.codec import encode
from contract.messages import QUALITY_LEVELS, Birth, Quality
from contract.topology import Community
from hub.inference import WindowModel
from hub.ingest import Ingestor
from hub.metrics import HubMetrics
from hub.registry import Registry
from hub.windows import Windows

pytestmark = pytest.mark.unit

C = "xihu-demo"
TOPIC = topics.device_telemetry(C, "gw-b1", "b1-th-01")


def _ingestor(community: Community, **kw: object) -> Ingestor:
    return Ingestor(Registry(community, offline_after_s=30), Windows(WindowModel(), 60), HubMetrics(),
                    max_payload_bytes=64 * 1024, **kw)  # type: ignore[arg-type]


def _reading(seq: int, ts: float, metrics: dict[str, float], quality: dict[str, str] | None = None,
             boot: str = "b", hist: bool = False) -> bytes:
    doc = {"v": 1, "seq": seq, "boot": boot, "ts": ts, "device": "b1-th-01", "metrics": metrics, "hist": hist}
    if quality is not None:
        doc["quality"] = quality
    return json.dumps(doc).encode()


def _born(ing: Ingestor, boot: str = "b") -> None:
    ing.handle(topics.gateway_state(C, "gw-b1"), encode(Birth(ts=1.0, boot=boot, seq=0, software="t")))


def test_every_quality_reason_has_a_level_and_the_codecs_accept_the_same_reasons() -> None:
    import typing

    assert set(typing.get_args(Quality)) == set(QUALITY_LEVELS)
    assert set(QUALITY_LEVELS.values()) == {"good", "uncertain", "bad"}


def test_a_bad_point_is_stored_and_shown_but_not_windowed_aggregated_or_alerted(community: Community) -> None:
    ing = _ingestor(community)
    _born(ing)
    ing.thresholds.limits["b1-th-01"] = {"temperature": (None, 30.0, None)}
    for i in range(1, 6):
        ing.handle(TOPIC, _reading(i, 1000.0 + i, {"temperature": 21.0, "humidity": 40.0}))
    # Within the class's range, but the sensor says its temperature is faulty: 80 °C would
    # be a fire for the model and a crossing for the threshold rule.
    ing.handle(TOPIC, _reading(6, 1006.0, {"temperature": 80.0, "humidity": 41.0}, {"temperature": "sensor_fault"}))
    # Outside the class's range: marked bad by the edge, so kept rather than dead-lettered.
    ing.handle(TOPIC, _reading(7, 1007.0, {"temperature": 900.0, "humidity": 42.0}, {"temperature": "out_of_range"}))
    ing.handle(TOPIC, _reading(8, 1008.0, {"humidity": 43.0}, {"temperature": "comm_error"}))
    ing.handle(TOPIC, _reading(9, 1009.0, {"temperature": 22.0, "humidity": 44.0}, {"humidity": "stale"}))
    batch = ing.take()
    assert batch.dead == [] and batch.crossings == []  # no threshold alert from a bad value
    stored = {(t.seq, t.quality) for t in batch.telemetry}
    assert (6, (("temperature", "sensor_fault"),)) in stored and (7, (("temperature", "out_of_range"),)) in stored
    n, total, lo, hi = ing.interval_stats[("b1-th-01", "temperature")]
    assert (n, lo, hi) == (6, 21.0, 22.0)  # neither 80 nor 900 in the aggregates
    assert ing.interval_stats[("b1-th-01", "humidity")][0] == 9  # uncertain stays in
    window = ing.windows._series[("b1-th-01", "temperature")]  # what the model would score
    assert max(v for _, v in window) == 22.0
    # 9 readings: 14 good points, 1 uncertain (stale humidity), 3 bad (two values, one not read).
    assert ing.interval_quality == {"good": 14, "bad": 3, "uncertain": 1}
    assert ing.metrics.totals["points_bad"] == 3 and ing.metrics.totals["points_uncertain"] == 1
    device = ing.registry.devices["b1-th-01"]
    assert device.last_values["temperature"] == 22.0 and device.last_quality == {"humidity": "stale"}


def test_the_last_value_shown_keeps_its_reason_until_it_is_read_good_again(community: Community) -> None:
    ing = _ingestor(community)
    _born(ing)
    ing.handle(TOPIC, _reading(1, 10.0, {"temperature": 900.0}, {"temperature": "out_of_range"}))
    device = ing.registry.devices["b1-th-01"]
    assert device.last_values == {"temperature": 900.0} and device.last_quality == {"temperature": "out_of_range"}
    ing.handle(TOPIC, _reading(2, 11.0, {"humidity": 40.0}, {"temperature": "comm_error"}))
    assert device.last_quality == {"temperature": "comm_error"}
    ing.handle(TOPIC, _reading(3, 12.0, {"temperature": 21.0}))
    assert device.last_quality == {}


def test_an_unmarked_value_outside_the_range_is_still_dead_lettered(community: Community) -> None:
    ing = _ingestor(community)
    ing.handle(TOPIC, _reading(1, 10.0, {"temperature": 900.0}, {"temperature": "stale"}))
    assert [d.reason for d in ing.take().dead] == ["out-of-range"]  # uncertain is no licence


def test_a_run_with_no_birth_gets_one_rebirth_request_per_interval(community: Community) -> None:
    ing = _ingestor(community, rebirth_min_interval_s=3600)
    for seq in range(1, 50):
        ing.handle(TOPIC, _reading(seq, 10.0 + seq, {"temperature": 21.0}, boot="never-born"))
    rebirths = ing.take().rebirths
    assert [(g, r) for g, r, _ in rebirths] == [("gw-b1", "no-birth")] and "never-born" in rebirths[0][2]
    assert ing.registry.gateways["gw-b1"].rebirth_asked["reason"] == "no-birth"  # type: ignore[index]
    assert ing.metrics.totals["rebirths_held_back"] == 48 and ing.metrics.totals["rebirth_requests"] == 1


def test_a_live_sequence_gap_beyond_the_tolerance_asks_for_a_rebirth(community: Community) -> None:
    ing = _ingestor(community, rebirth_seq_gap=100, rebirth_min_interval_s=0.0)
    _born(ing)
    ing.handle(TOPIC, _reading(1, 10.0, {"temperature": 21.0}))
    ing.handle(TOPIC, _reading(101, 11.0, {"temperature": 21.0}))  # 99 missing: within the tolerance
    ing.handle(TOPIC, _reading(5000, 4.0, {"temperature": 21.0}, hist=True))  # replayed history: not watched
    assert ing.take().rebirths == []
    ing.handle(TOPIC, _reading(400, 12.0, {"temperature": 21.0}))
    rebirths = ing.take().rebirths
    assert [(g, r) for g, r, _ in rebirths] == [("gw-b1", "seq-gap")] and "seq 101, then 400" in rebirths[0][2]
    _born(ing, "b2")  # a new run starts its own count
    ing.handle(TOPIC, _reading(1, 13.0, {"temperature": 21.0}, boot="b2"))
    assert ing.take().rebirths == []
