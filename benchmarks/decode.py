"""Telemetry decoding: pydantic (the contract) against msgspec (the hub's fast path).

    python benchmarks/decode.py [--n 200000]

Both decode and validate the same telemetry payload; json.loads (no validation) is
printed as a floor. The figure is microseconds per message and msgspec's speed-up.
"""

import argparse
import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import json  # noqa: E402

from contract.fastcodec import decode_telemetry  # noqa: E402
from contract.messages import Telemetry  # noqa: E402

PAYLOAD = (b'{"v":1,"seq":123456,"boot":"19a8c2e1f00-3fa2b1","ts":1764230000.5,"device":"b1-th-01",'
           b'"metrics":{"temperature":21.5,"humidity":48.2}}')


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200_000)
    n = ap.parse_args().n
    rows = {}
    for name, fn in (("pydantic Telemetry.model_validate_json", lambda: Telemetry.model_validate_json(PAYLOAD)),
                     ("msgspec fast path (contract.fastcodec)", lambda: decode_telemetry(PAYLOAD)),
                     ("json.loads, no validation", lambda: json.loads(PAYLOAD))):
        rows[name] = min(timeit.repeat(fn, number=n, repeat=3)) / n * 1e6
    for name, us in rows.items():
        print(f"{name:42s} {us:6.2f} us/message")
    names = list(rows)
    print(f"msgspec / pydantic speed-up: {rows[names[0]] / rows[names[1]]:.1f}x")


if __name__ == "__main__":
    main()
