"""City ingest: N communities at one batch a minute each, for ten minutes: does the lag grow?

    python benchmarks/city_ingest.py [--communities 200] [--duration-s 600] [--interval-s 60]

Runs `midbrain simulate city-scale` (each community its own bridge outbox, deliverer and
key, against one `midbrain city`) and prints the lag from a window's end to the city's
acknowledgement per minute. The figure: the last full minute's p99 lag over the first
full minute's after the first (minute 0 opens 200 outboxes and connections), by p50
and p99: about 1 when the city keeps up, growing when it falls behind.
"""

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from midbrain.city_scale import run_city_scale  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--communities", type=int, default=200)
    ap.add_argument("--duration-s", type=float, default=600.0)
    ap.add_argument("--interval-s", type=float, default=60.0)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mb-bench-city-"))
    report = asyncio.run(run_city_scale(args.communities, args.interval_s, args.duration_s, work,
                                        REPO / "config" / "demo.toml"))
    full = [m for m in report["per_minute"] if m["batches"] >= args.communities * 0.9]  # type: ignore[union-attr]
    for m in report["per_minute"]:  # type: ignore[union-attr]
        print(f"minute {m['minute']:>3}: {m['batches']:>5} batches, lag p50 {m['p50_ms']} ms, p99 {m['p99_ms']} ms, "
              f"max {m['max_ms']} ms (of it: outbox p99 {m['seal_p99_ms']} ms, HTTP p99 {m['http_p99_ms']} ms)")
    first, last = (full[1] if len(full) > 1 else full[0]), full[-1]
    print(f"{args.communities} communities, one batch each per {args.interval_s:.0f} s for {args.duration_s:.0f} s: "
          f"{report['batches']} batches, {report['delivery_failures']} failed attempts, city holds "
          f"{report['city']['summaries']} summaries; lag minute {first['minute']} p50 {first['p50_ms']} ms / p99 "
          f"{first['p99_ms']} ms, minute {last['minute']} p50 {last['p50_ms']} ms / p99 {last['p99_ms']} ms: "
          f"last/first p50 = {last['p50_ms'] / first['p50_ms']:.2f}")


if __name__ == "__main__":
    main()
