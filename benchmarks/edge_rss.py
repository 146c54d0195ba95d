"""Edge agent memory: RSS of `midbrain edge --config gateway.toml` with 50 serial devices, over a soak.

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
        # A gateway's own config file, as an installer writes it: the community, its broker, its agent.
        community = (REPO / "config" / "demo.toml").read_text().split("\n[mqtt]")[0]
        (work / "gateway.toml").write_text(
            f'{community}\n[mqtt]\nhost = "127.0.0.1"\nport = {endpoint.port}\n\n[edge]\nstate_dir = "{work}"\n'
            f'device_files = ["bus.toml"]\nhealth_interval_s = 5\n')
        env = {k: v for k, v in os.environ.items() if not k.startswith("MIDBRAIN_")}
        env["MALLOC_ARENA_MAX"] = "1"  # as config/systemd/midbrain-edge@.service runs it
        proc = subprocess.Popen([sys.executable, "-m", "midbrain", "edge", "--gateway", "gw-b1", "--config",
                                 str(work / "gateway.toml"), "--log-level", "WARNING"], env=env)
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
