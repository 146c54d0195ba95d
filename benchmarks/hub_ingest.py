"""Hub ingest throughput beside mosquitto_sub draining the same stream, QoS 1, local Mosquitto.

    python benchmarks/hub_ingest.py [--messages 100000]

Set BENCH_TRACE=1 to print progress, BENCH_PROFILE=FILE to run the hub under cProfile.

The broker queues --messages telemetry messages (20 devices, 2 metrics each, in order per
device) for two persistent sessions while neither is connected: mosquitto_sub's and the
hub's. Each then connects and drains its queue; the figure is messages per second from
connect to the last message (mosquitto_sub) or to the last one committed (the hub:
validation, dedup, SQLite, windowing and scoring included), and the hub's share.
"""

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import mosquitto  # noqa: E402

from contract import topics  # noqa: E402
from midbrain.broker import free_port  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEVICES = [f"b1-th-0{i}" for i in (1, 2, 3)] + [f"b2-th-0{i}" for i in (1, 2)]
GATEWAY = {"b1": "gw-b1", "b2": "gw-b2"}


def subscribe_only(host: str, port: int, client_id: str) -> None:
    """Create a persistent session subscribed to everything, then leave."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
    c.connect(host, port)
    c.loop_start()
    c.subscribe("mb/#", qos=1).__class__  # noqa: B018
    time.sleep(0.5)
    c.loop_stop()
    c.disconnect()


def publish(host: str, port: int, n: int) -> None:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-pub")
    c.max_inflight_messages_set(0)
    acked = [0]
    c.on_publish = lambda *a: acked.__setitem__(0, acked[0] + 1)
    c.connect(host, port)
    for _ in range(3):
        c.loop(0.05)
    sent = 0
    now = time.time()
    while acked[0] < n:
        while sent < n and sent - acked[0] < 500:
            device = DEVICES[sent % len(DEVICES)]
            gw = GATEWAY[device[:2]]
            body = {"v": 1, "seq": sent + 1, "boot": "bench", "ts": now + sent * 0.001, "device": device,
                    "metrics": {"temperature": 20 + (sent % 50) / 10, "humidity": 50.0}}
            c.publish(topics.device_telemetry("xihu-demo", gw, device), json.dumps(body), qos=1)
            sent += 1
        c.loop_read()
        c.loop_write()
    c.disconnect()


def drain_mosquitto_sub(port: int, n: int) -> float:
    sub = subprocess.Popen([shutil.which("mosquitto_sub") or "mosquitto_sub", "-h", "127.0.0.1", "-p", str(port),
                            "-i", "bench-ref", "-c", "-q", "1", "-t", "mb/#", "-C", str(n)],
                           stdout=subprocess.DEVNULL)
    start = time.perf_counter()
    sub.wait(600)
    return n / (time.perf_counter() - start)


def drain_hub(port: int, n: int, work: Path) -> tuple[float, dict]:
    db = work / "hub.sqlite3"
    env = {**os.environ, "MIDBRAIN_MQTT__PORT": str(port), "MIDBRAIN_HUB__DATABASE": str(db),
           "MIDBRAIN_HUB__HTTP_PORT": str(free_port()), "MIDBRAIN_HUB__CLIENT_ID": "bench-hub"}
    start = time.perf_counter()
    profile = ["-m", "cProfile", "-o", os.environ["BENCH_PROFILE"]] if os.environ.get("BENCH_PROFILE") else []
    hub = subprocess.Popen([sys.executable, *profile, "-m", "midbrain.cli", "hub", "--config", str(REPO / "config/demo.toml"),
                            "--log-level", "WARNING"], env=env)
    http = int(env["MIDBRAIN_HUB__HTTP_PORT"])
    try:
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{http}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.01)
        up = time.perf_counter()
        stored = 0
        next_trace = 0.0
        marks: dict[str, float] = {}
        while stored < n:
            time.sleep(0.01)
            try:
                con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
                row = con.execute("SELECT value FROM counters WHERE name = 'stored'").fetchone()
                con.close()
                stored = row[0] if row else 0
            except sqlite3.OperationalError:
                pass
            if hub.poll() is not None:
                sys.exit("hub exited")
            if os.environ.get("BENCH_TRACE") and time.perf_counter() >= next_trace:  # progress every 0.5 s
                print(f"  t={time.perf_counter() - start:6.2f}s stored={stored}", flush=True)
                next_trace = time.perf_counter() + 0.5
            if stored >= n // 10:
                marks.setdefault("p10", (time.perf_counter(), stored))  # type: ignore[arg-type]
            if stored >= n * 9 // 10:
                marks.setdefault("p90", (time.perf_counter(), stored))  # type: ignore[arg-type]
        elapsed = time.perf_counter() - start
    finally:
        hub.terminate()
        hub.wait(30)
    con = sqlite3.connect(db)
    stats = dict(con.execute("SELECT name, value FROM counters"))
    con.close()
    (t10, s10), (t90, s90) = marks["p10"], marks["p90"]  # type: ignore[misc]
    stats["_steady_rate"] = int((s90 - s10) / (t90 - t10))
    stats["_from_up"] = int(n / (time.perf_counter() - up - (time.perf_counter() - start - elapsed)))
    return n / elapsed, stats


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=100_000)
    args = ap.parse_args()
    broker, ep = mosquitto()
    work = Path(tempfile.mkdtemp(prefix="mb-hub-bench-"))
    try:
        # The hub's session first: start it once so its subscription exists, then stop it.
        drain_hub_session(ep.port, work)
        subscribe_only(ep.host, ep.port, "bench-ref")
        publish(ep.host, ep.port, args.messages)
        ref = drain_mosquitto_sub(ep.port, args.messages)
        hub, stats = drain_hub(ep.port, args.messages, work)
        steady, from_up = stats.pop("_steady_rate"), stats.pop("_from_up")
        print(f"{args.messages} QoS 1 messages queued for each: mosquitto_sub drained {ref:.0f} msg/s; "
              f"the hub stored {from_up} msg/s from answering /healthz to the last commit "
              f"({steady} msg/s between 10% and 90%; {hub:.0f} msg/s counting its process start): "
              f"hub/mosquitto_sub = {from_up / ref:.2f}")
        print(f"hub counters: stored {stats.get('stored')}, duplicates {stats.get('duplicates', 0)}, "
              f"dead-lettered {stats.get('dead_lettered', 0)}")
    finally:
        broker.stop()


def drain_hub_session(port: int, work: Path) -> None:
    """Run the hub until it has subscribed once (its persistent session then queues for it)."""
    db = work / "hub.sqlite3"
    http = free_port()
    env = {**os.environ, "MIDBRAIN_MQTT__PORT": str(port), "MIDBRAIN_HUB__DATABASE": str(db),
           "MIDBRAIN_HUB__HTTP_PORT": str(http), "MIDBRAIN_HUB__CLIENT_ID": "bench-hub"}
    hub = subprocess.Popen([sys.executable, "-m", "midbrain.cli", "hub", "--config", str(REPO / "config/demo.toml"),
                            "--log-level", "WARNING"], env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{http}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    time.sleep(0.5)
    hub.terminate()
    hub.wait(30)


if __name__ == "__main__":
    main()
