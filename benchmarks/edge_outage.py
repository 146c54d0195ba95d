"""Outage and replay: the broker stopped while devices keep producing, then started again.

    python benchmarks/edge_outage.py [--outage-s 600] [--rate 1000]

Readings are produced at --rate per second throughout. After the broker returns, the
agent replays its disk spool (marked historical) while live readings keep flowing. The
subscriber is `mosquitto_sub` (persistent session, QoS 1) writing each message with its
arrival time (%U) to a file, so that the check costs the agent's process nothing.
Figures: readings produced vs. received (none may be missing), the replay drain rate
(historical messages over the time from the first to the last of them arriving), and
the publish-to-arrival latency of live readings made in that time (p50/p99). The time
the agent takes to notice the broker is back (reconnect backoff) is printed separately.
"""

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import mosquitto  # noqa: E402

from edge.agent import EdgeAgent  # noqa: E402
from edge.settings import EdgeSettings  # noqa: E402
from midbrain.config import load_config  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def subscriber(port: int, out: Path) -> subprocess.Popen[bytes]:
    sub = shutil.which("mosquitto_sub")
    if sub is None:
        sys.exit("mosquitto_sub is not installed (Debian: mosquitto-clients)")
    return subprocess.Popen([sub, "-h", "127.0.0.1", "-p", str(port), "-i", "bench-outage-sub", "-c", "-q", "1",
                             "-t", "mb/v1/xihu-demo/gw-b2/+/telemetry", "-t", "mb/v1/xihu-demo/gw-b2/backlog",
                             "-F", "%U %p"],
                            stdout=out.open("ab"), stderr=subprocess.DEVNULL)


async def main(outage_s: float, rate: int, replay_rate: int) -> None:
    community = load_config(REPO / "config" / "demo.toml").community
    broker, endpoint = mosquitto()
    work = Path(tempfile.mkdtemp(prefix="mb-outage-"))
    received = work / "received.txt"
    sub = subscriber(endpoint.port, received)
    agent = EdgeAgent(community, "gw-b2", endpoint, EdgeSettings(state_dir=work / "edge", birth_wait_s=0.1,
                                                                 health_interval_s=3600, live_queue=1000,
                                                                 replay_max_rate=replay_rate))
    agent.devices.clear()
    made: set[int] = set()
    stop_agent = asyncio.Event()

    async def produce(seconds: float | None, until=None) -> None:
        start, n = time.monotonic(), 0
        while (seconds is not None and time.monotonic() - start < seconds) or (until is not None and until()):
            due = int((time.monotonic() - start) * rate)
            while n < due:
                agent._publish_reading("b2-th-01", time.time(), {"temperature": 20.0 + n % 7})
                made.add(agent._seq)
                n += 1
            await asyncio.sleep(0.002)

    run = asyncio.create_task(agent.run(stop_agent))
    await agent.uplink.wait_connected(10)
    await asyncio.sleep(1.0)
    await produce(2)
    broker.stop()
    print(f"broker stopped; producing {rate}/s for {outage_s:.0f} s", flush=True)
    await produce(outage_s)
    spooled = agent.spool.depth
    print(f"outage over: {spooled} readings in the spool ({agent.spool.size_bytes / 2**20:.1f} MB)", flush=True)
    broker.start()
    back = time.time()
    # mosquitto_sub's own reconnect can lag the agent's; a subscriber that is still away when the
    # replay starts would receive the broker's backlog for it in one go and blame the agent for the
    # wait. Reattach it at once (same id, persistent session: nothing is lost).
    sub.terminate()
    sub.wait(10)
    sub = subscriber(endpoint.port, received)
    await produce(None, until=lambda: agent.spool.depth > 0 or not agent.uplink.connected)
    await produce(3)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        if agent.spool.depth == 0 and agent.counters["readings_published"] + agent.counters["replayed"] >= len(made):
            await asyncio.sleep(1.0)  # the subscriber's last deliveries
            break
    stop_agent.set()
    await run
    agent_lat = sorted(agent.live_latency)  # enqueue -> PUBACK, the last 10,000 live readings
    sub.terminate()
    sub.wait(10)
    broker.stop()

    seen: set[int] = set()
    hist_arrivals: list[float] = []
    live_during: list[float] = []
    rows = []
    bundles = 0
    for line in received.read_bytes().splitlines():
        at, _, payload = line.partition(b" ")
        doc = json.loads(payload)
        if "items" in doc:  # a backlog: spooled readings, many to a message
            bundles += 1
            docs = [item["message"] for item in doc["items"]]
        else:
            docs = [doc]
        for doc in docs:
            rows.append((float(at), doc))
            seen.add(doc["seq"])
            if doc.get("hist"):
                hist_arrivals.append(float(at))
    replay_start = min(hist_arrivals) if hist_arrivals else back
    replay_end = max(hist_arrivals) if hist_arrivals else back
    for at, doc in rows:  # live readings made while the replay was arriving
        if not doc.get("hist") and replay_start <= doc["ts"] <= replay_end:
            live_during.append(at - doc["ts"])
    missing = len(made - seen)
    if "--debug" in sys.argv:
        worst = sorted(((at - doc["ts"], doc["ts"] - replay_start) for at, doc in rows
                        if not doc.get("hist") and replay_start <= doc["ts"] <= replay_end), reverse=True)[:15]
        print("worst live latencies (s, made at s after replay start):", [(round(a, 3), round(b, 3)) for a, b in worst])
    lat = sorted(live_during)

    def pct(q: float) -> float:
        return lat[min(len(lat) - 1, int(len(lat) * q))] * 1000 if lat else float("nan")

    replay_s = replay_end - replay_start
    print(f"produced {len(made)} readings ({spooled} during the outage), received {len(seen & made)} distinct, "
          f"missing {missing}; {len(rows) - len(seen)} duplicate deliveries")
    print(f"agent reconnected and replay began {replay_start - back:.2f} s after the broker was started again")
    print(f"replay of {len(hist_arrivals)} historical readings arrived in {replay_s:.2f} s: "
          f"{len(hist_arrivals) / replay_s:.0f} readings/s in {bundles} backlog messages, with {rate}/s live flowing; "
          f"live latency meanwhile p50 {pct(0.5):.1f} ms, p99 {pct(0.99):.1f} ms ({len(lat)} live readings)")
    a99 = agent_lat[int(len(agent_lat) * 0.99) - 1] * 1000 if agent_lat else float("nan")
    print(f"agent: replayed {agent.counters['replayed']}; its own enqueue-to-PUBACK latency for the last "
          f"{len(agent_lat)} live readings: p99 {a99:.1f} ms; spool {agent.spool.stats()}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--outage-s", type=float, default=600)
    ap.add_argument("--rate", type=int, default=1000)
    ap.add_argument("--replay-rate", type=int, default=50_000, help="the agent's replay_max_rate (0: unlimited)")
    ap.add_argument("--debug", action="store_true")
    a = ap.parse_args()
    asyncio.run(main(a.outage_s, a.rate, a.replay_rate))
