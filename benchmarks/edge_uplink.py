"""Edge uplink throughput, QoS 1 to a local Mosquitto: the agent beside a bare paho loop.

    python benchmarks/edge_uplink.py [--messages 100000] [--window 200]

Both publish the same number of telemetry messages with the same in-flight window to
the same broker in the same run; the figure is acknowledged messages per second, and
the agent's share of the bare loop's rate.
"""

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import paho.mqtt.client as mqtt

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import mosquitto  # noqa: E402

from contract import topics  # noqa: E402
from contract.codec import encode  # noqa: E402
from contract.messages import Telemetry  # noqa: E402
from contract.topology import Community  # noqa: E402
from edge.agent import EdgeAgent  # noqa: E402
from edge.settings import EdgeSettings  # noqa: E402
from midbrain.config import load_config  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def bare_paho(host: str, port: int, n: int, window: int) -> float:
    """A paho client driving its own socket in one thread, nothing else: the reference."""
    payload = encode(Telemetry(seq=1, boot="bench", ts=time.time(), device="b2-th-01",
                               metrics={"temperature": 21.5, "humidity": 48.0}))
    topic = topics.device_telemetry("xihu-demo", "gw-b2", "b2-th-01")
    acked = [0]
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-bare")
    client.max_inflight_messages_set(0)  # the loop below keeps the window itself, as the agent does
    client.on_publish = lambda *a: acked.__setitem__(0, acked[0] + 1)
    client.connect(host, port)
    for _ in range(5):
        client.loop(0.05)
    start, sent = time.perf_counter(), 0
    while acked[0] < n:
        while sent < n and sent - acked[0] < window:
            client.publish(topic, payload, qos=1)
            sent += 1
        client.loop_read()
        client.loop_write()
    elapsed = time.perf_counter() - start
    client.disconnect()
    return n / elapsed


async def agent_run(community: Community, endpoint, n: int, window: int, state: Path) -> tuple[float, dict]:
    agent = EdgeAgent(community, "gw-b2", endpoint, EdgeSettings(state_dir=state, inflight_window=window,
                                                                 birth_wait_s=0.1, health_interval_s=3600))
    agent.devices.clear()
    stop = asyncio.Event()
    run = asyncio.create_task(agent.run(stop))
    await agent.uplink.wait_connected(10)
    await asyncio.sleep(0.2)
    base = agent.counters["readings_published"]
    start = time.perf_counter()
    made = 0
    high = agent.settings.live_queue // 2
    while made < n:  # a device source that respects backpressure (the live queue), as pollers do
        while made < n and len(agent._live) < high:
            agent._publish_reading("b2-th-01", time.time(), {"temperature": 21.5, "humidity": 48.0})
            made += 1
        await asyncio.sleep(0)
    while agent.counters["readings_published"] - base < n:
        await asyncio.sleep(0.001)
    elapsed = time.perf_counter() - start
    stop.set()
    await run
    return n / elapsed, agent.stats()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--window", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    community = load_config(REPO / "config" / "demo.toml").community
    broker, endpoint = mosquitto()
    try:
        bare, ours = [], []
        for r in range(args.rounds):  # interleaved, so that machine noise hits both alike
            bare.append(bare_paho(endpoint.host, endpoint.port, args.messages, args.window))
            rate, stats = asyncio.run(agent_run(community, endpoint, args.messages, args.window,
                                                Path(tempfile.mkdtemp(prefix="mb-edge-"))))
            ours.append(rate)
            print(f"round {r + 1}: bare paho {bare[-1]:8.0f} msg/s   agent {ours[-1]:8.0f} msg/s   "
                  f"(spooled {stats['spooled']}, live p99 {stats['live_latency_p99_ms']} ms)")
        b, o = sorted(bare)[len(bare) // 2], sorted(ours)[len(ours) // 2]
        print(f"median: bare paho {b:.0f} msg/s, agent {o:.0f} msg/s, agent/bare = {o / b:.2f} "
              f"({args.messages} QoS 1 messages, window {args.window}, Mosquitto on loopback)")
    finally:
        broker.stop()


if __name__ == "__main__":
    main()
