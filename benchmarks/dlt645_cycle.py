"""Polling cycle of 32 DL/T 645 meters on one simulated 9600-baud bus, against wire time.

    python benchmarks/dlt645_cycle.py [--meters 32] [--baud 9600] [--cycles 3]

The simulator paces every request and reply at the baud rate (10 bits per byte, 8N1;
pseudo-terminals carry no real line speed), with zero turnaround, so the wire-time
limit is sum((request + reply bytes) * 10 / baud) over the meters and their four
quantities. The agent's bus poller (the real path: drivers, transport, thread hops,
report-by-exception) polls the bus; the figure is its cycle time over that limit.
"""

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge.poller import BusPoller  # noqa: E402
from edge.profiles import load_bus_file  # noqa: E402
from firmware_adapters import dlt645  # noqa: E402
from simulators.pty_bus import dlt645_bus  # noqa: E402

POINTS = {"energy_kwh": "energy_total", "voltage_v": "voltage_a", "current_a": "current_a", "power_kw": "power_total"}


def wire_limit(meters: int, baud: int) -> float:
    per_meter = 0
    for source in POINTS.values():
        q = dlt645.QUANTITIES[source]
        request = len(dlt645.read_request("000000000001", q.di))
        reply = len(dlt645.read_reply("000000000001", q, 1.0))
        per_meter += request + reply
    return meters * per_meter * 10 / baud


def profile(port: str, meters: int) -> Path:
    points = "".join(f'[[models.m.points]]\nname = "{n}"\nsource = "{s}"\n' for n, s in POINTS.items())
    devices = "".join(f'[[devices]]\nid = "em-{i:02d}"\nmodel = "m"\naddress = "{i:012d}"\n'
                      for i in range(1, meters + 1))
    path = Path(tempfile.mkdtemp()) / "bus.toml"
    path.write_text(f'gateway = "gw-b1"\n[bus]\nprotocol = "dlt645"\nport = "{port}"\ntimeout_s = 0.5\n'
                    f'gap_ms = 0\n[models.m]\nclass = "electricity_meter"\ninterval_s = 0.001\n{points}{devices}')
    return path


async def measure(port: str, meters: int, cycles: int) -> tuple[float, int]:
    readings = [0]
    poller = BusPoller(load_bus_file(profile(port, meters)), lambda *a: readings.__setitem__(0, readings[0] + 1),
                       lambda *a: None)
    stop = asyncio.Event()
    run = asyncio.create_task(poller.run(stop))
    while poller.counters["polls"] < meters:  # first cycle: opens the port, warms up
        await asyncio.sleep(0.01)
    start, polls0 = time.perf_counter(), poller.counters["polls"]
    while poller.counters["polls"] < polls0 + cycles * meters:
        await asyncio.sleep(0.005)
    elapsed = time.perf_counter() - start
    stop.set()
    await run
    return elapsed / cycles, poller.counters["poll_errors"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--meters", type=int, default=32)
    ap.add_argument("--baud", type=int, default=9600)
    ap.add_argument("--cycles", type=int, default=3)
    args = ap.parse_args()
    limit = wire_limit(args.meters, args.baud)
    with dlt645_bus(args.meters, baudrate=args.baud, bits_per_char=10) as bus:
        cycle, errors = asyncio.run(measure(bus.port, args.meters, args.cycles))
    print(f"{args.meters} meters x {len(POINTS)} quantities at {args.baud} baud: wire-time limit {limit:.3f} s, "
          f"measured cycle {cycle:.3f} s, cycle/limit = {cycle / limit:.3f} ({errors} poll errors)")


if __name__ == "__main__":
    main()
