"""A login flood against a real hub: /api/devices latency and hub RSS with and without it.

    python benchmarks/login_flood.py [--parallel 200] [--seconds 10] [--distributed]

`midbrain hub` (config/demo.toml) runs on a private Mosquitto with one staff account and a
staff API token made in its database first. The same run measures GET /api/devices with the
token, one request at a time, for --seconds without a flood and then for --seconds while
another process keeps --parallel wrong-password logins in flight at once (each answer is
followed at once by the next attempt). The hub's RSS is sampled every 50 ms throughout.
By default every attempt is at one account from one address, so backoff soon answers them
(429); with --distributed each attempt has a new name and a new client address (as a
reverse proxy on the hub's host reports it in X-Forwarded-For), so no backoff applies and
only the bounded hashing pool stands between the flood and the rest of the API.
Goal: p50 <= 50 ms during the flood.
"""

import argparse
import collections
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import midbrain_env, mosquitto, start_hub  # noqa: E402

from hub.accounts import Accounts  # noqa: E402
from midbrain.broker import free_port  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

_FLOOD = """
import asyncio, collections, json, sys, time
import httpx
url, parallel, seconds, distributed = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4] == "1"
async def main():
    statuses = collections.Counter()
    end = time.monotonic() + seconds
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=httpx.Limits(max_connections=parallel)) as http:
        async def one(i):
            n = 0
            while time.monotonic() < end:
                n += 1
                name, headers = "wang", {}
                if distributed:
                    name = f"user{i}-{n}"
                    headers = {"X-Forwarded-For": f"10.{i % 250}.{n // 250 % 250}.{n % 250}"}
                try:
                    r = await http.post("/api/login", json={"name": name, "password": f"wrong-{i}"}, headers=headers)
                    statuses[r.status_code] += 1
                except httpx.HTTPError as exc:
                    statuses[type(exc).__name__] += 1
        await asyncio.gather(*(one(i) for i in range(parallel)))
    print(json.dumps(statuses))
asyncio.run(main())
"""


def measure(url: str, token: str, seconds: float) -> list[float]:
    out = []
    end = time.monotonic() + seconds
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as http:
        while time.monotonic() < end:
            t = time.perf_counter()
            r = http.get("/api/devices")
            out.append(time.perf_counter() - t)
            assert r.status_code == 200, r.text
    return out


def pct(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))] * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--parallel", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--distributed", action="store_true", help="a new name and client address for every attempt")
    args = ap.parse_args()
    broker, endpoint = mosquitto()
    work = Path(tempfile.mkdtemp(prefix="mb-loginflood-"))
    db, port = work / "hub.sqlite3", free_port()
    accounts = Accounts(db)
    accounts.add_user("wang", "correct horse battery", "staff")
    token = accounts.create_token("bench", "staff", actor="bench")
    accounts.close()
    env = midbrain_env(MIDBRAIN_MQTT__PORT=str(endpoint.port), MIDBRAIN_HUB__DATABASE=str(db),
                       MIDBRAIN_HUB__HTTP_PORT=str(port))
    proc = start_hub(REPO / "config" / "demo.toml", port, env, log_level="ERROR")
    url = f"http://127.0.0.1:{port}"
    hub = psutil.Process(proc.pid)
    rss: dict[str, float] = collections.defaultdict(float)
    phase = ["idle"]
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.is_set():
            rss[phase[0]] = max(rss[phase[0]], hub.memory_info().rss / 2**20)
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    try:
        time.sleep(1)
        start_rss = hub.memory_info().rss / 2**20
        sampler.start()
        phase[0] = "quiet"
        quiet = measure(url, token, args.seconds)
        phase[0] = "flood"
        flood = subprocess.Popen([sys.executable, "-c", _FLOOD, url, str(args.parallel), str(args.seconds + 1),
                                  "1" if args.distributed else "0"],
                                 stdout=subprocess.PIPE, text=True)
        time.sleep(1)  # the flood at full strength before measuring
        during = measure(url, token, args.seconds)
        statuses = json.loads(flood.communicate(timeout=120)[0])
        phase[0] = "after"
        time.sleep(1)
        metrics = httpx.get(f"{url}/metrics").text
    finally:
        sampling.set()
        proc.terminate()
        proc.wait(30)
        broker.stop()
    print(f"hub RSS at start {start_rss:.0f} MiB; peak without the flood {rss['quiet']:.0f} MiB, "
          f"during it {rss['flood']:.0f} MiB (growth {rss['flood'] - start_rss:+.0f} MiB)")
    for name, values in (("without the flood", quiet), ("during the flood", during)):
        print(f"/api/devices {name}: {len(values)} requests, p50 {pct(values, 0.5):.1f} ms, "
              f"p99 {pct(values, 0.99):.1f} ms, mean {statistics.mean(values) * 1000:.1f} ms")
    print(f"login answers during the flood ({args.parallel} in flight): {dict(sorted(statuses.items()))}")
    print("hub counters: " + ", ".join(line for line in metrics.splitlines() if line.startswith("midbrain_hub_logins_total")))
    print(f"goal p50 <= 50 ms during the flood: {'met' if pct(during, 0.5) <= 50 else 'NOT met'}")


if __name__ == "__main__":
    main()
