"""``midbrain simulate city-scale``: many communities' bridges against one city platform.

Each simulated community has the bridge's own outbox (SQLite) and deliverer, its own
signing key, and produces one summary per ``interval_s`` (staggered over the interval),
which it seals and delivers at once. The lag of a summary is the time from the end of its
window to the city's acknowledgement. The report gives the lag per minute of the run, so
that a city falling behind shows as a lag that grows.
"""

import asyncio
import hashlib
import json
import logging
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

from cloud_bridge.delivery import Deliverer
from cloud_bridge.outbox import Outbox
from cloud_bridge.privacy import to_city
from cloud_bridge.settings import BridgeSettings
from contract.messages import HubHealth, HubSummary, MetricStats, SummaryCell, UtilityUse, WorkOrderStats
from midbrain.broker import free_port

log = logging.getLogger(__name__)
CLASSES = ("temp_humidity", "smoke", "water_meter", "elevator", "air_quality", "electricity_meter")


def community_id(n: int) -> str:
    return f"cs-{n:04d}"


def community_key(seed: str, community: str) -> str:
    return hashlib.sha256(f"{seed}:{community}".encode()).hexdigest()


def _summary(community: str, rng: random.Random, start: float, end: float) -> HubSummary:
    stats = MetricStats(count=60, mean=rng.uniform(15, 28), min=10.0, max=30.0)
    cells = tuple(SummaryCell(building=f"b{b}", device_class=c, devices=rng.randint(5, 40), online=5,
                              readings=rng.randint(100, 2000), metrics={"temperature": stats} if c == "temp_humidity" else {})
                  for b in range(1, 4) for c in CLASSES)
    return HubSummary(community=community, window_start=start, window_end=end, cells=cells,
                      alerts={"threshold": rng.randint(0, 2)}, requests={"repair": rng.randint(0, 9)},
                      work_orders=WorkOrderStats(opened=rng.randint(0, 3), resolved=rng.randint(0, 3), overdue=0),
                      utilities=UtilityUse(electricity_kwh=rng.uniform(5, 50), electricity_meters=40,
                                           water_m3=rng.uniform(0.5, 5), water_meters=40),
                      hub=HubHealth(readings_stored=5000, dead_letters=0, alerts_raised=1, devices=300,
                                    devices_online=290))


async def _community(n: int, settings: BridgeSettings, client: httpx.AsyncClient, interval_s: float, t0: float,
                     until: float, lags: list[tuple[float, float]], seals: list[tuple[float, float]],
                     failures: list[int]) -> None:
    community = community_id(n)
    rng = random.Random(n)
    outbox = Outbox(settings.outbox, signing_key=settings.community_key.get_secret_value().encode(),
                    gzip_min_bytes=settings.gzip_min_bytes)
    deliverer = Deliverer.http(outbox, settings, client, community)
    offset = (n * 0.6180339887 % 1.0) * interval_s  # communities spread over the interval
    try:
        k = 0
        while True:
            window_end = t0 + offset + k * interval_s
            if window_end > until:
                return
            await asyncio.sleep(max(0.0, window_end - time.time()))
            summary = _summary(community, rng, window_end - interval_s, window_end)
            await asyncio.to_thread(outbox.add, to_city(summary))
            await asyncio.to_thread(outbox.seal, community, settings.batch_max)
            seals.append((window_end - t0, time.time() - window_end))
            while (result := await deliverer.deliver_one()) is not None:
                if result is False:
                    failures[0] += 1
                    await asyncio.sleep(1.0)
            lags.append((window_end - t0, time.time() - window_end))
            k += 1
    finally:
        outbox.close()


def _by_minute(samples: list[tuple[float, float]]) -> dict[int, list[float]]:
    minutes: dict[int, list[float]] = {}
    for at, value in samples:
        minutes.setdefault(int(at // 60), []).append(value)
    return minutes


def _p99_ms(values: list[float]) -> float:
    return round(sorted(values)[max(0, int(len(values) * 0.99) - 1)] * 1000, 1) if values else 0.0


def _report(lags: list[tuple[float, float]], seals: list[tuple[float, float]], http: list[tuple[float, float]],
            communities: int, failures: int) -> dict[str, object]:
    """Per minute: the lag (window end to the city's acknowledgement, outbox bookkeeping
    included), and the two parts of it that can be told apart: the community's own outbox
    (adding and sealing, in the bridge's threads) and the HTTP exchange with the city."""
    seal_minutes, http_minutes = _by_minute(seals), _by_minute(http)
    per_minute = [{"minute": m, "batches": len(v), "p50_ms": round(statistics.median(v) * 1000, 1),
                   "p99_ms": _p99_ms(v), "max_ms": round(max(v) * 1000, 1),
                   "seal_p99_ms": _p99_ms(seal_minutes.get(m, [])), "http_p99_ms": _p99_ms(http_minutes.get(m, []))}
                  for m, v in sorted(_by_minute(lags).items())]
    return {"communities": communities, "batches": len(lags), "delivery_failures": failures, "per_minute": per_minute}


async def run_city_scale(communities: int, interval_s: float, duration_s: float, work: Path, config: Path,
                         city_url: str | None = None, key_seed: str = "city-scale") -> dict[str, object]:
    """Run, then return the report. Without ``city_url`` a `midbrain city` is started here
    with every community's key."""
    work.mkdir(parents=True, exist_ok=True)
    city = None
    if city_url is None:
        port = free_port()
        keys = {community_id(n): community_key(key_seed, community_id(n)) for n in range(communities)}
        env = {k: v for k, v in os.environ.items() if not k.startswith("MIDBRAIN_")}
        env.update(MIDBRAIN_CITY__HTTP_PORT=str(port), MIDBRAIN_CITY__DATABASE=str(work / "city.sqlite3"),
                   MIDBRAIN_CITY__COMMUNITY_KEYS=json.dumps(keys))
        city = subprocess.Popen([sys.executable, "-m", "midbrain", "city", "--config", str(config), "--log-level",
                                 "WARNING"], env=env)
        city_url = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient() as probe:
            for _ in range(150):
                try:
                    await probe.get(f"{city_url}/healthz")
                    break
                except httpx.HTTPError:
                    await asyncio.sleep(0.2)
    lags: list[tuple[float, float]] = []
    seals: list[tuple[float, float]] = []
    http: list[tuple[float, float]] = []
    failures = [0]

    async def request_starts(request: httpx.Request) -> None:
        request.extensions["started"] = time.time()

    async def response_came(response: httpx.Response) -> None:
        started = response.request.extensions["started"]
        http.append((started - t0, time.time() - started))

    try:
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        async with httpx.AsyncClient(base_url=city_url, limits=limits, timeout=30,
                                     event_hooks={"request": [request_starts], "response": [response_came]}) as client:
            t0 = time.time()
            async with asyncio.TaskGroup() as tg:
                for n in range(communities):
                    settings = BridgeSettings(city_url=city_url, outbox=work / f"{community_id(n)}.sqlite3",
                                              community_key=community_key(key_seed, community_id(n)))
                    tg.create_task(_community(n, settings, client, interval_s, t0, t0 + duration_s, lags, seals,
                                              failures))
        report = _report(lags, seals, http, communities, failures[0])
        async with httpx.AsyncClient() as probe:
            report["city"] = (await probe.get(f"{city_url}/api/stats")).json()
        return report
    finally:
        if city is not None:
            city.terminate()
            city.wait(30)
