"""A hub killed with SIGKILL mid-ingest loses no QoS 1 message the broker accepted, and
stores none twice: PUBACK only after commit, and a unique (gateway, boot, seq) backstop."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from contract import topics
from contract.endpoints import MqttEndpoint
from midbrain.broker import free_port
from tests.conftest import DEMO_CONFIG

pytestmark = pytest.mark.real

N = 6000
C = "xihu-demo"


def _hub(mqtt_ep: MqttEndpoint, db: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "MIDBRAIN_MQTT__HOST": mqtt_ep.host, "MIDBRAIN_MQTT__PORT": str(mqtt_ep.port),
           "MIDBRAIN_HUB__DATABASE": str(db), "MIDBRAIN_HUB__HTTP_PORT": str(free_port())}
    return subprocess.Popen([sys.executable, "-m", "midbrain.cli", "hub", "--config", str(DEMO_CONFIG),
                             "--log-level", "WARNING"], env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT)


def _stored(db: Path) -> tuple[int, int, int]:
    """(telemetry rows, distinct messages, the hub's own 'stored' counter), read from the database."""
    if not db.exists():
        return 0, 0, 0
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        rows = con.execute("SELECT COUNT(*), COUNT(DISTINCT seq) FROM telemetry WHERE boot = 'kill-test'").fetchone()
        stored = con.execute("SELECT value FROM counters WHERE name = 'stored'").fetchone()
        return rows[0], rows[1], stored[0] if stored else 0
    except sqlite3.OperationalError:  # tables not created yet
        return 0, 0, 0
    finally:
        con.close()


def test_sigkill_mid_ingest_loses_nothing_and_stores_nothing_twice(tmp_path: Path, mosquitto: MqttEndpoint) -> None:
    db, log = tmp_path / "hub.sqlite3", tmp_path / "hub.log"
    hub = _hub(mosquitto, db, log)
    try:
        deadline = time.monotonic() + 30  # the hub's session exists once its tables do
        while _stored(db) == (0, 0, 0) and not (db.exists() and time.monotonic() > deadline - 25):
            time.sleep(0.1)
        time.sleep(1.0)
        acked = threading.Semaphore(0)
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="kill-test-pub")
        pub.on_publish = lambda *a: acked.release()
        pub.connect(mosquitto.host, mosquitto.port)
        pub.loop_start()
        topic = topics.device_telemetry(C, "gw-b1", "b1-th-01")
        for seq in range(1, N + 1):  # a burst: the hub has a backlog in hand when it dies
            pub.publish(topic, json.dumps({"v": 1, "seq": seq, "boot": "kill-test", "ts": time.time(),
                                           "device": "b1-th-01",
                                           "metrics": {"temperature": 20 + seq % 5, "humidity": 50.0}}), qos=1)
        while _stored(db)[1] < N // 10:  # mid-ingest: some stored, the rest arriving
            time.sleep(0.005)
        hub.send_signal(signal.SIGKILL)
        assert hub.wait(10) == -signal.SIGKILL
        killed_at = _stored(db)[1]
        hub = _hub(mosquitto, db, log)
        for _ in range(N):  # every message accepted by the broker
            assert acked.acquire(timeout=30)
        pub.loop_stop()
        deadline = time.monotonic() + 60
        while _stored(db)[1] < N and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)  # anything redelivered late would show up now
        rows, distinct, counted = _stored(db)
    finally:
        hub.send_signal(signal.SIGTERM)
        hub.wait(30)
    assert distinct == N, f"{N - distinct} messages lost; hub log:\n{log.read_text()[-3000:]}"
    assert rows == 2 * N  # two metrics each, none twice
    assert _stored(db)[2] == N  # and the hub's counter agrees with the rows
    assert counted <= N and N // 10 <= killed_at < N


@pytest.mark.integration
def test_a_message_committed_again_after_a_restart_is_stored_once_and_counted_as_a_duplicate(tmp_path: Path) -> None:
    from hub.store import HubStore, TelemetryRow

    rows = [TelemetryRow(1.0, "b1-th-01", "gw-b1", seq, False, (("temperature", 20.0), ("humidity", 50.0)), "run-1")
            for seq in (1, 2, 3)]
    store = HubStore(tmp_path / "hub.sqlite3")
    first = store.write(rows, [], [], {"stored": 3, "stored_announced": 3})
    store.close()
    again = HubStore(tmp_path / "hub.sqlite3")  # the hub restarted; its in-memory windows are empty
    second = again.write(rows[1:] + [TelemetryRow(2.0, "b1-th-01", "gw-b1", 4, True, (("temperature", 21.0),), "run-1")],
                         [], [], {"stored": 3, "stored_announced": 3})
    assert (first.telemetry, first.telemetry_repeats) == (3, 0)
    assert (second.telemetry, second.telemetry_repeats) == (1, 2)
    assert second.corrections == {"stored": -2, "stored_announced": -2, "duplicates": 2}
    assert again.counters() == {"stored": 4, "stored_announced": 4, "duplicates": 2}
    assert again.counts()["telemetry_rows"] == 7
    again.close()
