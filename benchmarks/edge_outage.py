"""Outage and replay: the broker stopped while devices keep producing, then started again.

    python benchmarks/edge_outage.py [--outage-s 600] [--rate 1000]

Readings are produced at --rate per second throughout. After the broker returns, the
agent replays its disk spool (marked historical) while live readings keep flowing. The
figures: readings produced vs. received by a persistent-session subscriber (none may
be missing), the replay drain rate, and live readings' publish-to-receive latency
(p50/p99) during the replay, measured at the subscriber. That subscriber shares one
connection for both, so a live reading also waits behind the replayed ones the
subscriber has not yet read: the latency includes the subscriber's own backlog.
"""

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import aiomqtt

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import mosquitto  # noqa: E402

from contract.codec import decode_as  # noqa: E402
from contract.messages import Telemetry  # noqa: E402
from edge.agent import EdgeAgent  # noqa: E402
from edge.settings import EdgeSettings  # noqa: E402
from midbrain.config import load_config  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


async def main(outage_s: float, rate: int) -> None:
    community = load_config(REPO / "config" / "demo.toml").community
    broker, endpoint = mosquitto()
    agent = EdgeAgent(community, "gw-b2", endpoint, EdgeSettings(state_dir=Path(tempfile.mkdtemp()), birth_wait_s=0.1,
                                                                 health_interval_s=3600, live_queue=1000))
    agent.devices.clear()
    seen: set[int] = set()
    live_latency: list[float] = []
    replay_times: list[float] = []
    stop_sub, stop_agent = asyncio.Event(), asyncio.Event()

    async def subscriber() -> None:
        while not stop_sub.is_set():
            try:
                async with aiomqtt.Client(endpoint.host, endpoint.port, identifier="bench-sub", clean_session=False,
                                          max_queued_incoming_messages=0) as client:
                    await client.subscribe("mb/v1/xihu-demo/gw-b2/+/telemetry", qos=1)
                    async for m in client.messages:
                        t = decode_as(Telemetry, m.payload)  # type: ignore[arg-type]
                        now = time.time()
                        seen.add(t.seq)
                        if t.hist:
                            replay_times.append(now)
                        elif replaying:
                            live_latency.append(now - t.ts)
            except aiomqtt.MqttError:
                await asyncio.sleep(0.1)

    replaying = False
    produced = 0
    made: set[int] = set()

    async def produce(seconds: float) -> None:
        nonlocal produced
        start = time.monotonic()
        while time.monotonic() - start < seconds:
            due = int((time.monotonic() - start) * rate)
            while produced < due + base:
                agent._publish_reading("b2-th-01", time.time(), {"temperature": 20.0 + produced % 7})
                made.add(agent._seq)
                produced += 1
            await asyncio.sleep(0.005)

    sub = asyncio.create_task(subscriber())
    run = asyncio.create_task(agent.run(stop_agent))
    await agent.uplink.wait_connected(10)
    await asyncio.sleep(0.5)
    base = 0
    await produce(2)
    broker.stop()
    print(f"broker stopped; producing {rate}/s for {outage_s:.0f} s")
    base = produced
    await produce(outage_s)
    spooled = agent.spool.depth
    print(f"outage over: {spooled} readings in the spool ({agent.spool.size_bytes / 2**20:.1f} MB)")
    broker.start()
    replaying = True
    base = produced
    t0 = time.time()
    while agent.spool.depth > 0:
        base_before = produced
        await produce(1)
        base = produced
        assert produced > base_before
    replay_s = (max(replay_times) - t0) if replay_times else float("nan")
    replaying = False
    base = produced
    await produce(2)
    deadline = time.monotonic() + 60
    while len(made - seen) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    stop_agent.set()
    await run
    stop_sub.set()
    sub.cancel()
    await asyncio.gather(sub, return_exceptions=True)
    broker.stop()
    expected = made
    missing = len(expected - seen)
    lat = sorted(live_latency)
    p = (lambda q: lat[min(len(lat) - 1, int(len(lat) * q))] * 1000) if lat else (lambda q: float("nan"))
    print(f"produced {produced} readings ({spooled} during the outage), received {len(seen & expected)}, "
          f"missing {missing}")
    print(f"replay of {spooled} readings took {replay_s:.1f} s: {spooled / replay_s:.0f} msg/s while "
          f"{rate}/s live kept flowing; live latency during replay p50 {p(0.5):.1f} ms, p99 {p(0.99):.1f} ms "
          f"({len(lat)} live readings)")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--outage-s", type=float, default=600)
    ap.add_argument("--rate", type=int, default=1000)
    a = ap.parse_args()
    asyncio.run(main(a.outage_s, a.rate))
