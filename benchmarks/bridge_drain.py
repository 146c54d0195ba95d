"""Backlog drain: summary records/s from the bridge's outbox into the city platform, on loopback.

    python benchmarks/bridge_drain.py [--summaries 100000] [--batch-max 500] [--in-flight 3] [--stages]

The outbox is filled with --summaries typical summaries (2 buildings x 8 device classes,
work orders, utilities, environment, hub health) and sealed into batches (compressed and
signed as they are sealed), as after a long outage. The bridge's deliverer then sends them
(bridge.max_in_flight batches at a time, each deleted on the city's acknowledgement) to `midbrain city`, which verifies, deduplicates
and stores every summary. The reference, in the same run: the same request bodies posted
one at a time to a bare HTTP server (the same uvicorn and FastAPI) that only reads them.
"""

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import midbrain_env  # noqa: E402

from cloud_bridge.delivery import Deliverer, http_client  # noqa: E402
from cloud_bridge.outbox import Outbox  # noqa: E402
from cloud_bridge.privacy import to_city  # noqa: E402
from cloud_bridge.settings import BridgeSettings  # noqa: E402
from contract.messages import HubHealth, HubSummary, MetricStats, SummaryCell, UtilityUse, WorkOrderStats  # noqa: E402
from midbrain.broker import free_port  # noqa: E402

C = "xihu-demo"
KEY = "bench-key"
CLASSES = ("temp_humidity", "smoke", "water_meter", "elevator", "door_access", "bin_fill", "air_quality",
           "electricity_meter")
SINK = """
import sys, uvicorn
from fastapi import FastAPI, Request
app = FastAPI()
@app.post("/api/v1/batches")
async def batches(request: Request) -> dict:
    await request.body()
    return {"ok": True}
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


def summary(i: int) -> HubSummary:
    stats = MetricStats(count=30, mean=21.5, min=20.0, max=23.0)
    cells = tuple(SummaryCell(building=b, device_class=c, devices=12, online=11, readings=360,
                              metrics={"temperature": stats} if c == "temp_humidity" else {})
                  for b in ("b1", "b2") for c in CLASSES)
    return HubSummary(community=C, window_start=1_700_000_000.0 + 60 * i, window_end=1_700_000_060.0 + 60 * i,
                      cells=cells, alerts={"threshold": 1}, alerts_by_severity={"warning": 1},
                      requests={"repair": 6}, events={"service_request": 6},
                      work_orders=WorkOrderStats(opened=2, resolved=1, overdue=0, median_minutes_to_resolve=33.0),
                      utilities=UtilityUse(electricity_kwh=12.5, electricity_meters=24, water_m3=1.2, water_meters=24),
                      hub=HubHealth(readings_stored=5760, dead_letters=0, alerts_raised=1, devices=192,
                                    devices_online=176))


def wait_up(url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    sys.exit(f"{url} did not come up")


STAGES: dict[str, float] = defaultdict(float)


def timed(name: str, f):  # type: ignore[no-untyped-def]
    def call(*args, **kwargs):  # type: ignore[no-untyped-def]
        t = time.perf_counter()
        try:
            return f(*args, **kwargs)
        finally:
            STAGES[name] += time.perf_counter() - t
    return call


def bridge_stages(outbox: Outbox) -> None:
    """Time the bridge's steps of each delivery (its outbox calls, the request); batches come
    compressed and signed from the outbox."""
    from cloud_bridge import delivery

    for name in ("next_batch", "log_sent", "acknowledged"):
        setattr(outbox, name, timed(name, getattr(outbox, name)))
    send = delivery.HttpTransport.send

    async def timed_send(self, *args):  # type: ignore[no-untyped-def]
        t = time.perf_counter()
        try:
            return await send(self, *args)
        finally:
            STAGES["request (the city's whole answer)"] += time.perf_counter() - t
    delivery.HttpTransport.send = timed_send  # type: ignore[method-assign]


def city_stages(bodies: list[tuple[bytes, dict[str, str]]], work: Path) -> dict[str, float]:
    """The city's steps, in this process, on the same bodies and a fresh database: ms per batch."""
    import zlib

    from contract.city import SIGNATURE_HEADER, verify
    from contract.fastcodec import decode_batch
    from simulators.city.store import CityStore

    store = CityStore(work / "stages.sqlite3")
    spent: dict[str, float] = defaultdict(float)
    for body, headers in bodies:
        t0 = time.perf_counter()
        raw = zlib.decompressobj(wbits=31).decompress(body)
        t1 = time.perf_counter()
        assert verify(KEY.encode(), raw, headers[SIGNATURE_HEADER])
        t2 = time.perf_counter()
        key, community, summaries = decode_batch(raw)
        t3 = time.perf_counter()
        store.accept(key, community, summaries)
        t4 = time.perf_counter()
        for name, dt in (("gunzip", t1 - t0), ("verify", t2 - t1), ("decode", t3 - t2), ("store", t4 - t3)):
            spent[name] += dt
    store.close()
    return {k: round(v / len(bodies) * 1000, 1) for k, v in spent.items()}


def cpu_s(pid: int) -> float:
    """CPU time (user + system) a process has used so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def drain(outbox: Outbox, settings: BridgeSettings) -> tuple[int, float]:
    async with http_client(settings) as client:
        deliverer = Deliverer.http(outbox, settings, client, C)
        start = time.perf_counter()
        if await deliverer.drain():
            sys.exit(f"a delivery failed: {outbox.next_batch()}")
        return deliverer.bytes_sent, time.perf_counter() - start


async def reference(url: str, bodies: list[tuple[bytes, dict[str, str]]]) -> float:
    async with httpx.AsyncClient(base_url=url) as client:
        start = time.perf_counter()
        for body, headers in bodies:
            (await client.post("/api/v1/batches", content=body, headers=headers)).raise_for_status()
        return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--summaries", type=int, default=100_000)
    ap.add_argument("--batch-max", type=int, default=500)
    ap.add_argument("--in-flight", type=int, default=BridgeSettings().max_in_flight)
    ap.add_argument("--stages", action="store_true",
                    help="also print where each batch's time goes: the bridge's steps (timed as they run) and "
                         "the city's (the same bodies again, in this process)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mb-bench-drain-"))
    city_port, sink_port = free_port(), free_port()
    env = midbrain_env(MIDBRAIN_CITY__HTTP_PORT=str(city_port), MIDBRAIN_CITY__DATABASE=str(work / "city.sqlite3"),
                       MIDBRAIN_CITY__COMMUNITY_KEYS=f'{{"{C}": "{KEY}"}}')
    config = Path(__file__).resolve().parents[1] / "config" / "demo.toml"
    city = subprocess.Popen([sys.executable, "-m", "midbrain", "city", "--config", str(config), "--log-level", "WARNING"],
                            env=env)
    sink = subprocess.Popen([sys.executable, "-c", SINK, str(sink_port)], env=os.environ.copy())
    try:
        wait_up(f"http://127.0.0.1:{city_port}/healthz")
        wait_up(f"http://127.0.0.1:{sink_port}/docs")
        settings = BridgeSettings(city_url=f"http://127.0.0.1:{city_port}", community_key=KEY,
                                  outbox=work / "outbox.sqlite3", batch_max=args.batch_max,
                                  max_in_flight=args.in_flight)
        outbox = Outbox(settings.outbox, signing_key=KEY.encode(), gzip_min_bytes=settings.gzip_min_bytes)
        t0 = time.perf_counter()
        # Filling is not what is measured: without waiting for the disk at each summary.
        outbox._db.execute("PRAGMA synchronous=OFF")
        for i in range(args.summaries):
            outbox.add(to_city(summary(i)))
        outbox._db.execute("PRAGMA synchronous=FULL")
        while outbox.seal(C, args.batch_max):
            pass
        fill_s = time.perf_counter() - t0
        stats = outbox.stats()
        print(f"outbox filled with {stats['in_batches']} summaries in {stats['batches_waiting']} batches "
              f"({fill_s:.1f} s)", flush=True)

        # The reference gets the very bodies the bridge will send (read before they are deleted):
        # sealed, they are stored compressed and signed, as they go out.
        from contract.city import COMMUNITY_HEADER, SIGNATURE_HEADER

        rows = outbox._db.execute("SELECT body, encoding, signature FROM batches ORDER BY priority, created").fetchall()
        assert all(encoding == "gzip" for _, encoding, _ in rows)
        bodies = [(b, {"content-encoding": "gzip", COMMUNITY_HEADER: C, SIGNATURE_HEADER: signature,
                       "content-type": "application/json"}) for b, _, signature in rows]
        ref_s = asyncio.run(reference(f"http://127.0.0.1:{sink_port}", bodies))

        if args.stages:
            bridge_stages(outbox)
        cpu_before = cpu_s(os.getpid()), cpu_s(city.pid)
        sent, drain_s = asyncio.run(drain(outbox, settings))
        cpu_after = cpu_s(os.getpid()), cpu_s(city.pid)
        city_stats = httpx.get(f"http://127.0.0.1:{city_port}/api/stats").json()
        assert city_stats["summaries"] == args.summaries, city_stats
        rate, ref_rate = args.summaries / drain_s, args.summaries / ref_s
        print(f"{args.summaries} summaries in {len(bodies)} batches of {args.batch_max}: drained into the city platform "
              f"at {rate:,.0f} summaries/s ({drain_s:.2f} s, {sent / 1e6:.1f} MB on the wire); the same bodies posted "
              f"to a bare uvicorn endpoint: {ref_rate:,.0f}/s; drain/bare = {rate / ref_rate:.2f}")
        print(f"city: {city_stats}")
        bridge_cpu, city_cpu = (round((a - b) / len(bodies) * 1000, 1) for a, b in zip(cpu_after, cpu_before))
        print(f"CPU per batch during the drain: bridge {bridge_cpu} ms, city {city_cpu} ms "
              f"({os.cpu_count()} CPUs; wall {drain_s / len(bodies) * 1000:.1f} ms per batch)")
        if args.stages:
            per = {k: round(v / len(bodies) * 1000, 1) for k, v in STAGES.items()}
            print(f"bridge, ms per batch ({args.in_flight} in flight, so steps overlap): {per}")
            print(f"city, ms per batch, one at a time in this process: {city_stages(bodies, work)}")
        outbox.close()
    finally:
        for p in (city, sink):
            p.terminate()
            p.wait(30)


if __name__ == "__main__":
    main()
