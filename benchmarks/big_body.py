"""A 300 MB request body, unauthenticated, against a real hub and a real city platform: how
much each server's RSS grows while refusing it, how soon the 413 comes, and /healthz
latency meanwhile.

    python benchmarks/big_body.py [--mb 300]

`midbrain hub` and `midbrain city` (config/demo.toml, private ports and databases) each get,
over a raw socket, a POST with a declared Content-Length of --mb MB (hub: /api/login, city:
/api/v1/batches) and then one sent chunked, the body written in 1 MiB pieces as fast as the
socket takes them. A thread asks /healthz every 20 ms throughout. RSS is sampled every 20 ms.
Goal: RSS growth <= 50 MB.
"""

import argparse
import select
import socket
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

from midbrain.broker import free_port  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PIECE = b"x" * (1 << 20)


def send_big(port: int, path: str, mb: int, chunked: bool) -> tuple[str, float | None]:
    """Send the body; returns (the status line, MB written when the answer arrived or None)."""
    sock = socket.create_connection(("127.0.0.1", port))
    length = b"Transfer-Encoding: chunked" if chunked else f"Content-Length: {mb << 20}".encode()
    sock.sendall(b"POST " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 + length + b"\r\n\r\n")
    answered_at = None
    try:
        for i in range(mb):
            sock.sendall(b"100000\r\n" + PIECE + b"\r\n" if chunked else PIECE)
            if answered_at is None and select.select([sock], [], [], 0)[0]:
                answered_at = float(i + 1)
        if chunked:
            sock.sendall(b"0\r\n\r\n")
    except OSError:
        pass  # the server closed the connection after answering: fine
    sock.settimeout(30)
    try:
        status = sock.recv(65536).split(b"\r\n", 1)[0].decode()
    except OSError as exc:
        status = f"no answer ({exc})"
    sock.close()
    return status, answered_at


def run(name: str, proc: "subprocess.Popen[bytes]", port: int, path: str, mb: int) -> None:
    server = psutil.Process(proc.pid)
    base = server.memory_info().rss / 2**20
    peak = [base]
    latencies: list[float] = []
    done = threading.Event()

    def watch() -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            while not done.is_set():
                peak[0] = max(peak[0], server.memory_info().rss / 2**20)
                t = time.perf_counter()
                http.get("/healthz")
                latencies.append(time.perf_counter() - t)
                time.sleep(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    results = []
    for chunked in (False, True):
        t = time.perf_counter()
        status, answered = send_big(port, path, mb, chunked)
        results.append((chunked, status, answered, time.perf_counter() - t))
    time.sleep(0.5)
    done.set()
    watcher.join()
    peak[0] = max(peak[0], server.memory_info().rss / 2**20)
    print(f"{name}: RSS {base:.0f} MiB before, peak {peak[0]:.0f} MiB while refusing (growth {peak[0] - base:+.0f} MiB; "
          f"goal <= 50 MB: {'met' if peak[0] - base <= 50 else 'NOT met'})")
    for chunked, status, answered, took in results:
        when = f"after {answered:.0f} MB written" if answered is not None else "after the whole body"
        print(f"  {mb} MB {'chunked' if chunked else 'with Content-Length'} to {path}: {status!r}, answered {when}, "
              f"{took:.1f} s to write it all")
    print(f"  /healthz meanwhile: {len(latencies)} requests, p50 {statistics.median(latencies) * 1000:.1f} ms, "
          f"max {max(latencies) * 1000:.1f} ms")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=300)
    args = ap.parse_args()
    broker, endpoint = mosquitto()
    work = Path(tempfile.mkdtemp(prefix="mb-bigbody-"))
    hub_port, city_port = free_port(), free_port()
    env = midbrain_env(MIDBRAIN_MQTT__PORT=str(endpoint.port), MIDBRAIN_HUB__DATABASE=str(work / "hub.sqlite3"),
                       MIDBRAIN_HUB__HTTP_PORT=str(hub_port), MIDBRAIN_CITY__HTTP_PORT=str(city_port),
                       MIDBRAIN_CITY__DATABASE=str(work / "city.sqlite3"))
    config = REPO / "config" / "demo.toml"
    hub = start_hub(config, hub_port, env, log_level="ERROR")
    city = subprocess.Popen([sys.executable, "-m", "midbrain", "city", "--config", str(config), "--log-level", "ERROR"],
                            env=env)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{city_port}/healthz", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    sys.exit("the city did not come up")
                time.sleep(0.2)
        time.sleep(1)
        run("hub", hub, hub_port, "/api/login", args.mb)
        run("city", city, city_port, "/api/v1/batches", args.mb)
    finally:
        for proc in (hub, city):
            proc.terminate()
            proc.wait(30)
        broker.stop()


if __name__ == "__main__":
    main()
