"""Hub memory with a large community: RSS of `midbrain hub` with --devices registered.

    python benchmarks/hub_rss.py [--devices 5000] [--readings 12]

A generated community (50 buildings, one gateway each, devices of every scored class
spread over them) is written as the hub's config file. The hub starts on a private
Mosquitto; every gateway is born, and every device sends --readings readings (enough
for a window per scored metric). RSS is sampled once all are stored, after a scoring
pass, and again after --settle-s seconds of the hub running with every device known.
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import midbrain_env, mosquitto, start_hub  # noqa: E402

from contract import topics  # noqa: E402
from contract.codec import encode  # noqa: E402
from contract.messages import Birth, Telemetry  # noqa: E402
from hub.accounts import Accounts  # noqa: E402
from midbrain.broker import free_port  # noqa: E402

CLASSES = [("temp_humidity", {"temperature": 22.0, "humidity": 45.0}), ("smoke", {"smoke_density": 0.01}),
           ("water_meter", {"flow_lpm": 3.0, "total_m3": 100.0}), ("bin_fill", {"fill_pct": 40.0}),
           ("air_quality", {"pm1_0": 8.0, "pm2_5": 15.0, "pm10": 25.0})]


def community_toml(n: int, buildings: int = 50) -> str:
    out = ['[community]\nid = "bench"\nname = "bench"\n']
    out += [f'[[community.buildings]]\nid = "b{b}"\nname = "{b}号楼"\n' for b in range(buildings)]
    out += [f'[[community.gateways]]\nid = "gw-{b}"\nbuilding = "b{b}"\n' for b in range(buildings)]
    for i in range(n):
        cls = CLASSES[i % len(CLASSES)][0]
        out.append(f'[[community.devices]]\nid = "d{i:05d}"\ngateway = "gw-{i % buildings}"\nclass = "{cls}"\n')
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=5000)
    ap.add_argument("--readings", type=int, default=12)
    ap.add_argument("--settle-s", type=float, default=30)
    args = ap.parse_args()
    broker, endpoint = mosquitto()
    work = Path(tempfile.mkdtemp(prefix="mb-hubrss-"))
    port = free_port()
    (work / "hub.toml").write_text(community_toml(args.devices) + f'\n[mqtt]\nhost = "127.0.0.1"\nport = {endpoint.port}\n'
                                   f'\n[hub]\nhttp_port = {port}\ndatabase = "{work / "hub.sqlite3"}"\nstride_s = 5\n')
    accounts = Accounts(work / "hub.sqlite3")  # every read needs a login: a staff token, as an admin makes one
    auth = {"Authorization": f"Bearer {accounts.create_token('bench', 'staff', actor='bench')}"}
    accounts.close()
    proc = start_hub(work / "hub.toml", port, midbrain_env())
    url = f"http://127.0.0.1:{port}"
    try:
        hub = psutil.Process(proc.pid)
        idle = hub.memory_info().rss / 2**20
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-hubrss")
        client.connect(endpoint.host, endpoint.port)
        client.loop_start()
        now = time.time()
        for b in range(50):
            client.publish(topics.gateway_state("bench", f"gw-{b}"),
                           encode(Birth(ts=now, boot="bench", seq=0, software="bench")), qos=1, retain=True)
        sent = 0
        for r in range(args.readings):
            infos = []
            for i in range(args.devices):
                metrics = {k: v + 0.1 * ((r * 7 + i) % 5) for k, v in CLASSES[i % len(CLASSES)][1].items()}
                msg = Telemetry(seq=r * args.devices + i + 1, boot="bench", ts=now - (args.readings - r) * 4, device=f"d{i:05d}",
                                metrics=metrics)
                infos.append(client.publish(topics.device_telemetry("bench", f"gw-{i % 50}", f"d{i:05d}"),
                                            encode(msg), qos=1))
                sent += 1
            for info in infos:
                info.wait_for_publish(60)
            print(f"round {r + 1}/{args.readings}: {sent} sent", file=sys.stderr, flush=True)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            stats = httpx.get(f"{url}/api/stats", timeout=10, headers=auth).json()
            if stats["stored"] + stats["dead_lettered"] >= sent:
                break
            time.sleep(0.5)
        else:
            print(f"not all stored: {stats}", file=sys.stderr)
        time.sleep(6)  # a scoring pass (stride_s = 5) over every device's windows
        loaded = hub.memory_info().rss / 2**20
        time.sleep(args.settle_s)
        settled = hub.memory_info().rss / 2**20
        devices = len(httpx.get(f"{url}/api/devices", timeout=30, headers=auth).json())
        client.loop_stop()
    finally:
        proc.terminate()
        proc.wait(60)
        broker.stop()
    print(json.dumps({"devices_registered": devices, "readings_sent": sent, "readings_stored": stats["stored"],
                      "dead_lettered": stats["dead_lettered"], "online": stats["devices_online"]}))
    print(f"hub RSS with {devices} devices: idle {idle:.1f} MB, after {sent} readings and scoring {loaded:.1f} MB, "
          f"{args.settle_s:.0f} s later {settled:.1f} MB")


if __name__ == "__main__":
    main()
