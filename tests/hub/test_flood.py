"""100,000 malformed messages are dead-lettered while the hub keeps storing valid traffic and
answering its API (issue 4). The malformed kinds are drawn by hypothesis."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contract import topics
from contract.endpoints import MqttEndpoint
from midbrain.broker import free_port
from tests.conftest import DEMO_CONFIG

pytestmark = pytest.mark.real

C = "xihu-demo"
FLOOD = 100_000
GOOD = {"v": 1, "seq": 1, "boot": "flood", "ts": 1764230000.0, "device": "b1-th-01",
        "metrics": {"temperature": 21.0, "humidity": 50.0}}
TOPIC = topics.device_telemetry(C, "gw-b1", "b1-th-01")
_lists = st.lists(st.integers(), max_size=2)
_NEVER_VALID = {
    "seq": st.one_of(st.none(), _lists, st.integers(max_value=-1), st.text(alphabet="abcxyz", min_size=1, max_size=5)),
    "ts": st.one_of(st.none(), _lists, st.text(alphabet="abcxyz", min_size=1, max_size=5)),
    "device": st.one_of(st.none(), _lists, st.integers(), st.sampled_from(["UPPER", "-x", "a b", "", "x" * 70])),
    "metrics": st.one_of(st.none(), _lists, st.integers(), st.text(max_size=5), st.just({}),
                         st.just({"temperature": "warm"})),
    "boot": st.one_of(st.none(), _lists, st.integers(), st.just(""), st.just("b" * 65)),
    "hist": st.one_of(st.none(), _lists, st.just("maybe"), st.integers(min_value=2)),
}


KINDS = ("wrong-type", "missing", "huge", "utf8", "mismatch", "garbage", "topic")


@st.composite
def malformed(draw: st.DrawFn, kind: str) -> tuple[str, bytes, str]:
    """(topic, payload, kind) that the contract must refuse."""
    doc = dict(GOOD)
    if kind == "wrong-type":  # a value that is never valid for that field (lax coercions included)
        key = draw(st.sampled_from(sorted(_NEVER_VALID)))
        doc[key] = draw(_NEVER_VALID[key])
        return TOPIC, json.dumps(doc).encode(), kind
    if kind == "missing":
        for key in draw(st.lists(st.sampled_from(["seq", "boot", "ts", "device", "metrics"]), min_size=1,
                                 unique=True)):
            doc.pop(key)
        return TOPIC, json.dumps(doc).encode(), kind
    if kind == "huge":  # the size only: the payload is built when sent (keeps the example printable)
        return TOPIC, str(draw(st.integers(64 * 1024, 80 * 1024))).encode(), kind
    if kind == "utf8":
        return TOPIC, json.dumps(doc).encode()[:-2] + draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80"])) \
            + b"}", kind
    if kind == "mismatch":
        doc["device"] = draw(st.sampled_from(["b1-th-02", "b1-smoke-01", "b2-th-01"]))
        return TOPIC, json.dumps(doc).encode(), kind
    if kind == "garbage":
        return TOPIC, draw(st.binary(min_size=1, max_size=64).filter(lambda b: not b.strip().startswith(b"{"))), kind
    level = draw(st.sampled_from(["colour", "telemetryx", "cmd2"]))
    return f"mb/v1/{C}/gw-b1/b1-th-01/{level}", json.dumps(doc).encode(), kind


def _counters(db: Path) -> dict[str, int]:
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return dict(con.execute("SELECT name, value FROM counters"))
        finally:
            con.close()
    except sqlite3.OperationalError:
        return {}


@settings(max_examples=1, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture])
@given(drawn=st.tuples(*(st.lists(malformed(kind), min_size=15, max_size=15) for kind in KINDS)))
def test_a_flood_of_malformed_messages_is_dead_lettered_while_valid_traffic_flows(
        drawn: tuple[list[tuple[str, bytes, str]], ...], tmp_path_factory: pytest.TempPathFactory) -> None:
    templates = [t for per_kind in drawn for t in per_kind]
    from midbrain.broker import BrokerProcess

    work = tmp_path_factory.mktemp("flood")
    with BrokerProcess.choose("mosquitto", work / "broker") as broker:
        ep = MqttEndpoint(host=broker.host, port=broker.port)
        db, http = work / "hub.sqlite3", free_port()
        env = {**os.environ, "MIDBRAIN_MQTT__PORT": str(ep.port), "MIDBRAIN_HUB__DATABASE": str(db),
               "MIDBRAIN_HUB__HTTP_PORT": str(http)}
        from hub.accounts import Accounts

        accounts = Accounts(db)  # as an admin would, before the hub starts: a token to read its stats
        token = accounts.create_token("flood-test", "staff", actor="tests")
        accounts.close()
        hub = subprocess.Popen([sys.executable, "-m", "midbrain.cli", "hub", "--config", str(DEMO_CONFIG),
                                "--log-level", "ERROR"], env=env, stderr=subprocess.DEVNULL)
        valid: subprocess.Popen[str] | None = None
        stop = threading.Event()
        try:
            _wait_http(http)
            huge = [t for t in templates if t[2] == "huge"]
            small = [t for t in templates if t[2] != "huge"]
            valid_sent, api_latencies = [0], []

            # Valid telemetry at ~400 readings/s throughout, from a process of its own (so that the
            # test's own threads do not slow the flood it sends).
            valid = subprocess.Popen([sys.executable, "-c", _VALID_PUBLISHER, ep.host, str(ep.port), TOPIC],
                                     stdout=subprocess.PIPE, text=True)

            def api_poller() -> None:
                with httpx.Client(base_url=f"http://127.0.0.1:{http}", timeout=10,
                                  headers={"Authorization": f"Bearer {token}"}) as client:
                    while not stop.is_set():
                        t = time.perf_counter()
                        assert client.get("/api/stats").status_code == 200
                        api_latencies.append(time.perf_counter() - t)
                        time.sleep(0.1)

            threads = [threading.Thread(target=api_poller)]
            for th in threads:
                th.start()
            flood = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="flood")
            flood.max_inflight_messages_set(0)
            acked = [0]
            flood.on_publish = lambda *a: acked.__setitem__(0, acked[0] + 1)
            flood.connect(ep.host, ep.port)
            sent = 0
            while acked[0] < FLOOD:
                while sent < FLOOD and sent - acked[0] < 500:
                    # huge payloads are one in 200 (64-80 KB each); the rest cycle through the small kinds
                    topic, payload, kind = huge[sent % len(huge)] if huge and sent % 200 == 0 \
                        else small[sent % len(small)]
                    if kind == "huge":
                        payload = b'{"pad":"' + b"x" * int(payload) + b'"}'
                    flood.publish(topic, payload, qos=1)
                    sent += 1
                flood.loop_read()
                flood.loop_write()
            flood.disconnect()
            deadline = time.monotonic() + 120
            while _counters(db).get("dead_lettered", 0) < FLOOD and time.monotonic() < deadline:
                time.sleep(0.5)
            stop.set()
            for th in threads:
                th.join(30)
            valid.terminate()
            valid_sent[0] = int((valid.communicate(timeout=30)[0] or "0").split()[-1])
            while _counters(db).get("stored", 0) < valid_sent[0] and time.monotonic() < deadline:
                time.sleep(0.2)
            assert hub.poll() is None, "the hub died during the flood"
            counters = _counters(db)
        finally:
            # A failure (or the per-test timeout) must not leave the publisher or the poller
            # running: an orphaned publisher floods a dead broker's port forever.
            stop.set()
            if valid is not None and valid.poll() is None:
                valid.kill()
                valid.wait(10)
            hub.send_signal(signal.SIGTERM)
            hub.wait(30)
    assert counters.get("dead_lettered") == FLOOD, counters
    assert counters.get("stored") == valid_sent[0] > 1000
    assert api_latencies and max(api_latencies) < 2.0, f"slowest API answer {max(api_latencies):.2f}s"
    con = sqlite3.connect(db)
    reasons = dict(con.execute("SELECT reason, COUNT(*) FROM dead_letters GROUP BY reason"))
    written = dict(con.execute("SELECT reason, stored FROM dead_letter_counts"))
    con.close()
    assert sum(written.values()) == FLOOD  # every one written, the table then kept within its quota
    assert sum(reasons.values()) <= 10_000  # [hub.dead_letters] max_rows
    # The first of each reason are kept whatever the flood: every kind is still there to look at.
    assert {"schema", "invalid-utf8", "topic-payload-mismatch", "bad-topic", "oversize", "invalid-json"} <= set(reasons)


_VALID_PUBLISHER = """
import json, signal, sys, time
import paho.mqtt.client as mqtt
host, port, topic = sys.argv[1], int(sys.argv[2]), sys.argv[3]
acked = [0]
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="flood-valid")
c.on_publish = lambda *a: acked.__setitem__(0, acked[0] + 1)
c.connect(host, port)
c.loop_start()
running = [True]
signal.signal(signal.SIGTERM, lambda *a: running.__setitem__(0, False))
seq = 0
while running[0]:
    seq += 1
    c.publish(topic, json.dumps({"v": 1, "seq": seq, "boot": "flood", "ts": time.time(), "device": "b1-th-01",
                                 "metrics": {"temperature": 21.0, "humidity": 50.0}}), qos=1)
    time.sleep(0.0025)
while acked[0] < seq:
    time.sleep(0.01)
print(seq, flush=True)
"""


def _wait_http(port: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise TimeoutError("hub did not come up")
