"""The ingest pipeline's verdict on every kind of bad input (pure: no broker, no store)."""

import json

import pytest

from contract import topics
from contract.codec import encode, pack_backlog
from contract.messages import Birth, Telemetry
from contract.topology import Community
from hub.inference import WindowModel
from hub.ingest import Ingestor
from hub.metrics import HubMetrics
from hub.registry import Registry
from hub.windows import Windows

pytestmark = pytest.mark.unit

C = "xihu-demo"
TOPIC = topics.device_telemetry(C, "gw-b1", "b1-th-01")


def _ingestor(community: Community) -> Ingestor:
    return Ingestor(Registry(community, offline_after_s=30), Windows(WindowModel(), 60), HubMetrics(),
                    max_payload_bytes=64 * 1024)


def _telemetry(**over: object) -> bytes:
    doc = {"v": 1, "seq": 1, "boot": "b", "ts": 1.0, "device": "b1-th-01", "metrics": {"temperature": 21.0}}
    doc.update(over)
    return json.dumps(doc).encode()


@pytest.mark.parametrize(("topic", "payload", "reason"), [
    ("mb/v2/xihu-demo/gw-b1/b1-th-01/telemetry", _telemetry(), "bad-topic"),
    ("mb/v1/xihu-demo/gw-b1/b1-th-01/colour", _telemetry(), "bad-topic"),
    ("mb/v1/other-place/gw-b1/b1-th-01/telemetry", _telemetry(), "foreign-community"),
    ("mb/v1/xihu-demo/gw-zz/b1-th-01/telemetry", _telemetry(), "unknown-gateway"),
    (TOPIC, b"\xff\xfe\x00", "invalid-utf8"),
    (TOPIC, b'{"v":1,', "invalid-json"),
    (TOPIC, _telemetry(seq="one"), "schema"),
    (TOPIC, _telemetry(metrics={}), "schema"),
    (TOPIC, b"{" + b" " * 70_000 + b"}", "oversize"),
    (TOPIC, _telemetry(device="b1-th-02"), "topic-payload-mismatch"),
    (topics.device_telemetry(C, "gw-b1", "b9-ghost"), _telemetry(device="b9-ghost"), "unknown-device"),
    (topics.device_telemetry(C, "gw-b1", "b2-th-01"), _telemetry(device="b2-th-01"), "wrong-gateway"),
    (TOPIC, _telemetry(metrics={"colour": 3}), "unknown-metric"),
    (TOPIC, _telemetry(metrics={"temperature": 900}), "out-of-range"),
])
def test_bad_input_is_dead_lettered_with_its_reason(community: Community, topic: str, payload: bytes,
                                                     reason: str) -> None:
    ing = _ingestor(community)
    ing.handle(topic, payload, received_at=5.0)
    dead = ing.take().dead
    assert [(d.topic, d.reason) for d in dead] == [(topic, reason)]
    assert dead[0].received_at == 5.0
    assert dead[0].raw == payload[:64 * 1024] and dead[0].size == len(payload)
    assert ing.metrics.totals["dead_lettered"] == 1


def test_valid_telemetry_is_kept_and_redelivery_is_dropped(community: Community) -> None:
    ing = _ingestor(community)
    msg = Telemetry(seq=9, boot="run-1", ts=10.0, device="b1-th-01", metrics={"temperature": 21.0})
    ing.handle(TOPIC, encode(msg))
    ing.handle(TOPIC, encode(msg))  # QoS 1 redelivery
    ing.handle(TOPIC, encode(msg.model_copy(update={"boot": "run-2"})))  # same seq, new agent run
    pending = ing.take()
    assert [(t.seq, t.device) for t in pending.telemetry] == [(9, "b1-th-01"), (9, "b1-th-01")]
    assert ing.metrics.totals["duplicates"] == 1 and not pending.dead
    assert ing.registry.devices["b1-th-01"].last_values == {"temperature": 21.0}


def test_birth_brings_a_gateway_online(community: Community) -> None:
    ing = _ingestor(community)
    ing.handle(topics.gateway_state(C, "gw-b1"), encode(Birth(ts=1.0, boot="r", seq=1, software="t")))
    assert ing.registry.gateways["gw-b1"].online
    assert not ing.take().dead


def test_the_hubs_own_topics_are_not_dead_lettered(community: Community) -> None:
    ing = _ingestor(community)
    ing.handle(topics.gateway_command(C, "gw-b1"), b'{"anything": 1}')
    ing.handle(topics.hub_summary(C), b"{}")
    assert len(ing.take()) == 0


def test_readings_are_attributed_to_announced_agent_runs(community: Community) -> None:
    ing = _ingestor(community)
    ing.handle(topics.gateway_state(C, "gw-b1"), encode(Birth(ts=1.0, boot="run-1", seq=0, software="t")))
    ing.handle(TOPIC, _telemetry(boot="run-1", seq=1))
    ing.handle(TOPIC, _telemetry(boot="run-1", seq=2, metrics={"temperature": 900}))  # out of range
    ing.handle(TOPIC, _telemetry(boot="typed-by-hand", seq=1))
    t = ing.metrics.totals
    assert (t["stored_announced"], t["dead_announced_telemetry"], t["stored_unannounced"]) == (1, 1, 1)


def test_sequence_windows_are_bounded_per_gateway(community: Community) -> None:
    from hub.ingest import RUNS_REMEMBERED

    ing = _ingestor(community)
    for run in range(RUNS_REMEMBERED + 3):
        ing.handle(TOPIC, _telemetry(boot=f"run-{run}", seq=1))
    assert len(ing._seqs["gw-b1"]) == RUNS_REMEMBERED
    ing.handle(TOPIC, _telemetry(boot=f"run-{RUNS_REMEMBERED + 2}", seq=1))  # newest run: still deduplicated
    assert ing.metrics.totals["duplicates"] == 1


def test_devices_announced_at_birth_are_adopted_and_gateway_health_is_kept(community: Community) -> None:
    """A gateway's serial devices come from its device profiles, not the community file: its
    birth announces them, and then their readings are accepted."""
    from contract.messages import DeviceInfo, GatewayHealth

    ing = _ingestor(community)
    meter = topics.device_telemetry(C, "gw-b1", "b1-em-07")
    reading = json.dumps({"v": 1, "seq": 2, "boot": "b", "ts": 1.0, "device": "b1-em-07",
                          "metrics": {"energy_kwh": 1234.5}, "quality": {"voltage_v": "comm_error"}}).encode()
    ing.handle(meter, reading, received_at=1.0)
    assert [d.reason for d in ing.take().dead] == ["unknown-device"]  # not announced yet
    birth = Birth(ts=1.0, boot="b", seq=1, software="t",
                  devices=(DeviceInfo.model_validate({"id": "b1-em-07", "class": "electricity_meter"}),))
    ing.handle(topics.gateway_state(C, "gw-b1"), encode(birth), received_at=2.0)
    ing.handle(meter, reading.replace(b'"seq": 2', b'"seq": 3'), received_at=3.0)
    batch = ing.take()
    assert not batch.dead and [r.device for r in batch.telemetry] == ["b1-em-07"]
    assert ing.registry.devices["b1-em-07"].building == "b1"
    health = GatewayHealth(ts=4.0, boot="b", cpu_pct=5, memory_pct=40, disk_pct=30, agent_rss_mb=44, spool_depth=0,
                           spool_oldest_s=0, devices_online=1, devices_offline=0, device_errors={"b1-em-07": 0})
    ing.handle(topics.gateway_health(C, "gw-b1"), encode(health), received_at=4.0)
    assert ing.registry.gateways["gw-b1"].health["devices_online"] == 1


def test_a_backlog_is_handled_item_by_item(community: Community) -> None:
    """Each spooled message in a backlog gets the verdict it would get alone; a bad one costs the others nothing."""
    ing = _ingestor(community)
    ing.handle(TOPIC, _telemetry(seq=1, boot="live", ts=50.0, metrics={"temperature": 25.0}))
    backlog = topics.gateway_backlog(C, "gw-b1")
    reading = Telemetry(seq=1, boot="r", ts=10.0, device="b1-th-01", metrics={"temperature": 21.0}, hist=True)
    other_gateway = topics.device_telemetry(C, "gw-b2", "b2-th-01")
    ing.handle(backlog, pack_backlog([
        (TOPIC, encode(reading)),
        (TOPIC, _telemetry(seq=2, metrics={"temperature": 900})),  # out of range: this item only
        (other_gateway, _telemetry(seq=3, device="b2-th-01")),  # not this gateway's to replay
        (topics.gateway_state(C, "gw-b1"), encode(Birth(ts=1.0, boot="r", seq=4, software="t"))),  # never spooled
        (TOPIC, encode(reading.model_copy(update={"seq": 5, "ts": 11.0}))),
        (TOPIC, encode(reading)),  # a duplicate, as from a replay that was cut short and repeated
    ]), received_at=7.0)
    pending = ing.take()
    assert [(t.seq, t.ts, t.hist) for t in pending.telemetry][1:] == [(1, 10.0, True), (5, 11.0, True)]
    assert ing.registry.devices["b1-th-01"].last_values == {"temperature": 25.0}  # the live value stands
    assert [(d.topic, d.reason) for d in pending.dead] == [
        (TOPIC, "out-of-range"), (other_gateway, "backlog-item-topic"),
        (topics.gateway_state(C, "gw-b1"), "backlog-item-topic")]
    assert pending.dead[0].raw == _telemetry(seq=2, metrics={"temperature": 900})  # the item's own bytes
    assert ing.metrics.totals["duplicates"] == 1 and ing.metrics.totals["backlog_items"] == 6
    assert not ing.registry.gateways["gw-b1"].online  # a birth smuggled in a backlog did nothing


@pytest.mark.parametrize(("payload", "reason"), [
    (b'{"v":1,"items":[]}', "schema"),
    (b'{"v":1,"items":[{"topic":"x","message":[1]}]}', "schema"),
    (b'{"v":1,"items":', "invalid-json"),
    (b'{"items":[' + b",".join([b'{"topic":"t","message":{}}'] * 1001) + b"]}", "schema"),
    (b"{" + b" " * (1024 * 1024) + b"}", "oversize"),
])
def test_a_malformed_backlog_is_dead_lettered_whole(community: Community, payload: bytes, reason: str) -> None:
    ing = _ingestor(community)
    ing.handle(topics.gateway_backlog(C, "gw-b1"), payload)
    dead = ing.take().dead
    assert [d.reason for d in dead] == [reason] and dead[0].raw == payload[:1024 * 1024]


def test_a_threshold_excursion_raises_once_and_rearms_only_back_inside_with_a_margin(community: Community) -> None:
    ing = _ingestor(community)
    ing.thresholds.limits["b1-th-01"] = {"temperature": (None, 30.0, None)}
    temps = [25.0, 31.0, 32.0, 29.9, 30.5, 29.0, 31.5]  # 29.9 is inside but within the 2% margin
    for seq, t in enumerate(temps, start=1):
        ing.handle(TOPIC, _telemetry(seq=seq, ts=float(seq), metrics={"temperature": t}))
    ing.handle(TOPIC, _telemetry(seq=99, ts=1.0, metrics={"temperature": 40.0}, hist=True))  # history: never alerts
    crossings = ing.take().crossings
    assert [(ts, value, bound) for ts, _, _, value, bound, _ in crossings] == [(2.0, 31.0, "high"), (7.0, 31.5, "high")]


def test_a_change_faster_than_the_rate_limit_raises_once_until_the_series_calms_down(community: Community) -> None:
    ing = _ingestor(community)
    ing.thresholds.limits["b1-th-01"] = {"temperature": (None, None, 2.0)}  # at most 2 °C a minute
    # (seconds, °C): steady, then +3 °C in 30 s (6/min), still fast, calmer, calm, fast again
    points = [(0, 20.0), (30, 20.5), (60, 23.5), (90, 26.0), (120, 26.8), (150, 27.0), (180, 29.0)]
    for seq, (t, v) in enumerate(points, start=1):
        ing.handle(TOPIC, _telemetry(seq=seq, ts=1000.0 + t, metrics={"temperature": v}))
    crossings = ing.take().crossings
    assert [(ts, round(rate, 2), bound) for ts, _, _, rate, bound, _ in crossings] == [
        (1060.0, 6.0, "rate"), (1180.0, 4.0, "rate")]  # 1.6/min at 120 s is not calm enough; 0.4/min at 150 s is
