"""How big the hub's database grows under a flood of oversized messages (dead letters).

    python benchmarks/dead_letters.py [--messages 100000] [--payload-bytes 71680] [--no-quota]

The real path: a private Mosquitto, `midbrain hub --config config/demo.toml` (its database in
a temporary folder), and one publisher sending --messages payloads over hub.max_payload_bytes
(64 KiB) to a device's telemetry topic at QoS 1. Each is refused as "oversize" and becomes a
dead letter. When the hub's /metrics has counted every one, the figure is the size of the
database (main file + WAL) and what the dead letters hold, beside the quota
([hub.dead_letters]). --no-quota sets the quota out of reach and keeps whole payloads, as
before it existed (mind the disk: about messages x 64 KiB).
"""

import argparse
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import midbrain_env, mosquitto, start_hub  # noqa: E402

from contract import topics  # noqa: E402
from midbrain.broker import free_port  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TOPIC = topics.device_telemetry("xihu-demo", "gw-b1", "b1-th-01")


def publish(host: str, port: int, n: int, size: int) -> None:
    """``n`` payloads of ``size`` bytes at QoS 1, at most 500 awaiting their PUBACK."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-dead-letters")
    c.max_inflight_messages_set(500)
    c.max_queued_messages_set(1000)
    acked = [0]
    c.on_publish = lambda *a: acked.__setitem__(0, acked[0] + 1)
    c.connect(host, port)
    c.loop_start()
    payload = b"x" * size
    try:
        for i in range(n):
            while i - acked[0] >= 1000:
                time.sleep(0.001)
            c.publish(TOPIC, payload, qos=1)
        while acked[0] < n:
            time.sleep(0.01)
    finally:
        c.loop_stop()
        c.disconnect()


def counted(url: str, name: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    found = re.search(rf'^{re.escape(name)} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--payload-bytes", type=int, default=70 * 1024)
    ap.add_argument("--no-quota", action="store_true")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="mb-bench-dead-"))
    broker, ep = mosquitto()
    port = free_port()
    env = midbrain_env(MIDBRAIN_MQTT__PORT=str(ep.port), MIDBRAIN_HUB__HTTP_PORT=str(port),
                       MIDBRAIN_HUB__DATABASE=str(work / "hub.sqlite3"))
    if args.no_quota:
        env.update(MIDBRAIN_HUB__DEAD_LETTERS__MAX_ROWS=str(10**12), MIDBRAIN_HUB__DEAD_LETTERS__MAX_BYTES=str(10**15),
                   MIDBRAIN_HUB__DEAD_LETTERS__RAW_PREFIX_BYTES=str(10**7))
    hub = start_hub(REPO / "config" / "demo.toml", port, env, log_level="ERROR")
    url = f"http://127.0.0.1:{port}"
    try:
        start = time.monotonic()
        publish(ep.host, ep.port, args.messages, args.payload_bytes)
        label = 'midbrain_hub_dead_letters_stored_total{reason="oversize"}'
        while counted(url, label) < args.messages:
            if hub.poll() is not None:
                sys.exit("the hub stopped")
            time.sleep(0.5)
        elapsed = time.monotonic() - start
        rows = counted(url, "midbrain_hub_dead_letters_held_rows")
        held = counted(url, "midbrain_hub_dead_letters_held_bytes")
        evicted = counted(url, 'midbrain_hub_dead_letters_evicted_total{reason="oversize"}')
        main_file = (work / "hub.sqlite3").stat().st_size
        wal = sum(p.stat().st_size for p in work.glob("hub.sqlite3-wal"))
        print(f"{args.messages} oversized messages of {args.payload_bytes} bytes through Mosquitto and the hub "
              f"in {elapsed:.0f} s ({'no quota' if args.no_quota else 'default quota'}): database "
              f"{(main_file + wal) / 2**20:.1f} MiB (main file {main_file / 2**20:.1f} MiB + WAL {wal / 2**20:.1f} MiB); "
              f"dead letters held {rows:.0f} rows, "
              f"{held / 2**20:.1f} MiB; evicted {evicted:.0f}")
    finally:
        hub.terminate()
        hub.wait(timeout=60)
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
