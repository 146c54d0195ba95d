"""Egress volume: bytes the bridge sends to the city as a share of the telemetry bytes the
hub ingests, over the same run of the demo community.

    python benchmarks/egress_volume.py [--duration 900] [--summary-interval 60] [--linger 300]

Runs `midbrain demo` (its 20 simulated devices and 3 gateways, Mosquitto when installed)
with the hub summarising every --summary-interval seconds and the bridge letting routine
summaries wait up to --linger seconds to share a batch, as in production. At the end
the hub's count of MQTT payload bytes received and the bridge's count of request body
bytes sent (gzip included; HTTP headers not) give the share, and a per-day figure for
this community scaled from the run. The city records every request the bridge makes as
received (`city.capture`): batches, and the downlink's requests (held open by the city,
`bridge.downlink_wait_s`) and answers. The share is also given with all of them, each
with its request line and headers.
"""

import argparse
import base64
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import midbrain_env  # noqa: E402

from midbrain.broker import free_port  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def total(stats_dir: Path, service: str, key: str) -> int:
    """Summed over the service's runs (the demo restarts some services on purpose)."""
    return sum(json.loads(p.read_text()).get(key, 0) for p in stats_dir.glob(f"{service}.*.json"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=900)
    ap.add_argument("--linger", type=float, default=300.0)
    ap.add_argument("--summary-interval", type=float, default=60.0)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mb-bench-egress-"))
    env = midbrain_env(MIDBRAIN_MQTT__PORT=str(free_port()), MIDBRAIN_HUB__HTTP_PORT=str(free_port()),
                       MIDBRAIN_CITY__HTTP_PORT=str(free_port()),
                       MIDBRAIN_HUB__SUMMARY_INTERVAL_S=str(args.summary_interval),
                       MIDBRAIN_BRIDGE__BATCH_LINGER_S=str(args.linger),
                       MIDBRAIN_CITY__CAPTURE=str(work / "egress.jsonl"))
    subprocess.run([sys.executable, "-m", "midbrain", "demo", "--config", str(REPO / "config" / "demo.toml"),
                    "--duration", str(args.duration), "--workdir", str(work / "run"), "--report", str(work / "r.json")],
                   env=env, check=True, stdout=subprocess.DEVNULL)
    stats = work / "run" / "stats"
    ingested, sent = total(stats, "hub", "received_bytes"), total(stats, "bridge", "bytes_sent")
    report = json.loads((work / "r.json").read_text())
    requests = [json.loads(line) for line in (work / "egress.jsonl").read_text().splitlines()]
    heads = sum(len(f"{r['method']} {r['path']} HTTP/1.1\r\n") + sum(len(f"{k}: {v}\r\n") for k, v in r["headers"].items())
                + 2 for r in requests)
    kinds: dict[str, int] = {}
    for r in requests:
        kind = {"GET": "downlink requests"}.get(r["method"], "answers" if "/downlink/" in r["path"] else "batches")
        kinds[kind] = kinds.get(kind, 0) + 1
    bodies = sum(len(base64.b64decode(r["body_b64"])) for r in requests)  # batches: the bridge's own count
    everything = heads + bodies
    per_day = 86400 / args.duration
    print(f"{args.duration} s of the demo community, summaries every {args.summary_interval:.0f} s, batches lingering "
          f"up to {args.linger:.0f} s: hub ingested "
          f"{ingested:,} bytes of MQTT payload, the bridge sent {sent:,} bytes of batch bodies to the city: "
          f"egress/ingest = {sent / ingested:.2%} (per day at this rate: {sent * per_day / 1e6:.2f} MB up, "
          f"{ingested * per_day / 1e6:.1f} MB in). Every request the city received "
          f"({', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))}): {bodies:,} bytes of bodies and {heads:,} of "
          f"request lines and headers, {everything:,} in all: {everything / ingested:.2%}; "
          f"demo ok={report.get('ok')}")


if __name__ == "__main__":
    main()
