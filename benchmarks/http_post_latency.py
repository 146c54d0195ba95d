"""Round trip of a 12 KB POST to servicekit's HttpServer, with its listening socket made the
way it is now (proto IPPROTO_TCP) and the way it was (proto 0), beside plain uvicorn.run.

    python benchmarks/http_post_latency.py [--requests 50]

With proto 0, asyncio does not set TCP_NODELAY on accepted connections, and a response
written in two parts waits for the client's delayed ACK.
"""

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from midbrain.broker import free_port  # noqa: E402

SERVER = """
import asyncio, socket, sys, uvicorn
from fastapi import FastAPI, Request
import servicekit.http as http
app = FastAPI()
@app.post("/x")
async def x(request: Request) -> dict:
    await request.body()
    return {"ok": True}
kind, port = sys.argv[1], int(sys.argv[2])
if kind == "uvicorn":
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
else:
    server = http.HttpServer(app, "127.0.0.1", port)
    if kind == "proto0":  # the listening socket as HttpServer made it before
        server._sock.close()
        server._sock = socket.socket(socket.AF_INET)
        server._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server._sock.bind(("127.0.0.1", port))
    async def main():
        await server.serve()
    asyncio.run(main())
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=50)
    args = ap.parse_args()
    for kind in ("uvicorn", "httpserver", "proto0"):
        port = free_port()
        server = subprocess.Popen([sys.executable, "-c", SERVER, kind, str(port)])
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
                for _ in range(100):
                    try:
                        client.get("/docs")
                        break
                    except httpx.HTTPError:
                        time.sleep(0.1)
                times = []
                for _ in range(args.requests):
                    t = time.perf_counter()
                    client.post("/x", content=b"x" * 12_000).raise_for_status()
                    times.append((time.perf_counter() - t) * 1000)
            print(f"{kind:>10}: 12 KB POST round trip p50 {statistics.median(times):.1f} ms, "
                  f"max {max(times):.1f} ms ({args.requests} requests)")
        finally:
            server.terminate()
            server.wait(10)


if __name__ == "__main__":
    main()
