"""Edge agent memory: RSS of `midbrain edge` with 50 serial devices, over a soak.

    python benchmarks/edge_rss.py [--devices 50] [--soak-s 1800]

50 DL/T 645 meters answer on one simulated bus; the agent polls them every second
(4 quantities each) and publishes to a private Mosquitto. RSS is sampled after 10 s
(warm) and at the end of the soak.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import mosquitto  # noqa: E402

from simulators.pty_bus import dlt645_bus  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=50)
    ap.add_argument("--soak-s", type=float, default=1800)
    args = ap.parse_args()
    broker, endpoint = mosquitto()
    work = Path(tempfile.mkdtemp(prefix="mb-rss-"))
    with dlt645_bus(args.devices, baudrate=115200) as bus:
        points = "".join(f'[[models.m.points]]\nname = "{n}"\nsource = "{s}"\n' for n, s in (
            ("energy_kwh", "energy_total"), ("voltage_v", "voltage_a"), ("current_a", "current_a"),
            ("power_kw", "power_total")))
        devices = "".join(f'[[devices]]\nid = "em-{i:03d}"\nmodel = "m"\naddress = "{i:012d}"\n'
                          for i in range(1, args.devices + 1))
        (work / "bus.toml").write_text(f'gateway = "gw-b1"\n[bus]\nprotocol = "dlt645"\nport = "{bus.port}"\n'
                                       f'gap_ms = 2\n[models.m]\nclass = "electricity_meter"\ninterval_s = 1\n'
                                       f'{points}{devices}')
        env = {**os.environ, "MIDBRAIN_MQTT__PORT": str(endpoint.port), "MIDBRAIN_EDGE__STATE_DIR": str(work),
               "MIDBRAIN_EDGE__DEVICE_FILES": f'["{work / "bus.toml"}"]', "MIDBRAIN_EDGE__HEALTH_INTERVAL_S": "5"}
        proc = subprocess.Popen([sys.executable, "-m", "midbrain.cli", "edge", "--gateway", "gw-b1", "--config",
                                 str(REPO / "config" / "demo.toml"), "--log-level", "WARNING"], env=env)
        try:
            time.sleep(10)
            p = psutil.Process(proc.pid)
            warm = p.memory_info().rss / 2**20
            samples = [warm]
            end = time.monotonic() + args.soak_s
            while time.monotonic() < end and proc.poll() is None:
                time.sleep(min(30, max(0.1, end - time.monotonic())))
                samples.append(p.memory_info().rss / 2**20)
            final = samples[-1]
            polls = bus.counters.requests
        finally:
            proc.terminate()
            proc.wait(30)
            broker.stop()
    print(f"{args.devices} devices: RSS warm {warm:.1f} MB, after {args.soak_s:.0f} s {final:.1f} MB "
          f"(growth {final - warm:+.1f} MB, max {max(samples):.1f} MB; {polls} requests answered)")


if __name__ == "__main__":
    main()
