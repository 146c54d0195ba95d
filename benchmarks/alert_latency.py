"""Publish-to-alert latency at a steady message rate, through a real Mosquitto.

    python benchmarks/alert_latency.py [--rate 1000] [--seconds 30] [--every 50]

A `midbrain hub` process runs the demo community on a private Mosquitto. A supervisor
sets a temperature threshold (high 35 °C) on b1-th-01 through the API. The benchmark
then publishes --rate readings per second (QoS 1) spread over the community's
temperature sensors; every --every-th reading goes to b1-th-01 and alternates between
crossing the threshold (40 °C) and coming back (20 °C, which re-arms it), so that it
raises an alert. The hub publishes each alert on mb/v1/{c}/_hub/alert; latency is from
the publish call to the alert's arrival at a subscriber. Beside it, the reference: the
same readings' latency from publish to a plain subscriber of the telemetry topic (the
broker's own round trip on this machine, in the same run).
"""

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import midbrain_env, mosquitto, start_hub  # noqa: E402

from contract import topics  # noqa: E402
from contract.codec import encode  # noqa: E402
from contract.messages import Telemetry  # noqa: E402
from midbrain.broker import free_port  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
C = "xihu-demo"
SENSORS = [("gw-b1", "b1-th-02"), ("gw-b1", "b1-th-03"), ("gw-b2", "b2-th-01"), ("gw-b2", "b2-th-02")]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--every", type=int, default=50)
    args = ap.parse_args()
    broker, endpoint = mosquitto()
    work = Path(tempfile.mkdtemp(prefix="mb-alertlat-"))
    port = free_port()
    env = midbrain_env(MIDBRAIN_MQTT__PORT=str(endpoint.port), MIDBRAIN_HUB__HTTP_PORT=str(port),
                       MIDBRAIN_HUB__DATABASE=str(work / "hub.sqlite3"))
    subprocess.run([sys.executable, "-m", "midbrain", "user", "add", "bench", "--role", "supervisor",
                    "--password-stdin", "--config", str(REPO / "config" / "demo.toml")],
                   input="bench-password\n", text=True, env=env, check=True, capture_output=True)
    hub = start_hub(REPO / "config" / "demo.toml", port, env, log_level="ERROR")
    url = f"http://127.0.0.1:{port}"
    sent: dict[tuple[str, float], float] = {}  # (device, ts) -> when publish was called
    alert_lat: list[float] = []
    plain_lat: list[float] = []
    lock = threading.Lock()

    def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        now = time.perf_counter()
        doc = json.loads(msg.payload)
        with lock:
            at = sent.get((doc["device"], doc["ts"]))
        if at is None:
            return
        (alert_lat if msg.topic.endswith("/alert") else plain_lat).append(now - at)

    try:
        with httpx.Client(base_url=url, timeout=10) as http:
            http.post("/api/login", json={"name": "bench", "password": "bench-password"}).raise_for_status()
            http.put("/api/devices/b1-th-01/desired",
                     json={"thresholds": {"temperature": {"high": 35}}}).raise_for_status()
        sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-alert-sub")
        sub.on_message = on_message
        sub.connect(endpoint.host, endpoint.port)
        sub.subscribe([(topics.hub_alert(C), 1), (topics.device_telemetry(C, "gw-b1", "b1-th-01"), 1)])
        sub.loop_start()
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-alert-pub")
        pub.max_inflight_messages_set(0)
        pub.connect(endpoint.host, endpoint.port)
        pub.loop_start()
        time.sleep(1)
        start, n, crossings, seq = time.perf_counter(), 0, 0, 0
        while time.perf_counter() - start < args.seconds:
            due = int((time.perf_counter() - start) * args.rate)
            while n < due:
                n += 1
                seq += 1
                if n % args.every == 0:
                    gateway, device = "gw-b1", "b1-th-01"
                    crossings += 1
                    value = 40.0 if crossings % 2 else 20.0
                else:
                    gateway, device = SENSORS[n % len(SENSORS)]
                    value = 21.0 + (n % 10) * 0.1
                ts = round(time.time(), 6)
                payload = encode(Telemetry(seq=seq, boot="bench", ts=ts, device=device, metrics={"temperature": value}))
                with lock:
                    sent[(device, ts)] = time.perf_counter()
                pub.publish(topics.device_telemetry(C, gateway, device), payload, qos=1)
            time.sleep(0.001)
        time.sleep(2)
        pub.loop_stop()
        sub.loop_stop()
    finally:
        hub.terminate()
        hub.wait(30)
        broker.stop()

    def pct(xs: list[float], q: float) -> float:
        xs = sorted(xs)
        return xs[min(len(xs) - 1, int(len(xs) * q))] * 1000 if xs else float("nan")

    expected = (crossings + 1) // 2
    print(f"{n} readings at {args.rate}/s for {args.seconds:.0f} s; {expected} threshold crossings, "
          f"{len(alert_lat)} alerts received")
    print(f"publish -> alert: p50 {pct(alert_lat, 0.5):.2f} ms, p99 {pct(alert_lat, 0.99):.2f} ms, "
          f"max {pct(alert_lat, 1.0):.2f} ms")
    print(f"reference, publish -> plain subscriber (same readings of b1-th-01): p50 {pct(plain_lat, 0.5):.2f} ms, "
          f"p99 {pct(plain_lat, 0.99):.2f} ms")


if __name__ == "__main__":
    main()
