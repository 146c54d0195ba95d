"""ONNX scoring: the hub's window model, batched and one window at a time.

    python benchmarks/onnx_scoring.py [--batch 10000] [--rounds 20]

The model is the one the hub ships (hub/models/window_anomaly), in the same onnxruntime
session the hub builds (one intra-op thread, spinning off), scoring feature rows like the
ones the hub computes. Figures: windows/s for batches of --batch rows (median of
--rounds), and the latency of a single-row call (p50 and p99 of 20,000 calls), each
beside the same measurement of session.run alone on a constant input, the floor that
onnxruntime itself sets on this machine.
"""

import argparse
import time

import numpy as np

from hub.features import N_FEATURES
from hub.inference import WindowModel


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=20)
    args = ap.parse_args()
    model = WindowModel()
    rng = np.random.default_rng(1)
    batch = rng.normal(0, 2, size=(args.batch, N_FEATURES)).astype(np.float32)
    model.score(batch)  # warm up

    rates = []
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        model.score(batch)
        rates.append(args.batch / (time.perf_counter() - t0))
    raw = model._session  # the floor: session.run without our wrapper (argmax, kinds list)
    name = raw.get_inputs()[0].name
    raw_rates = []
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        raw.run(None, {name: batch})
        raw_rates.append(args.batch / (time.perf_counter() - t0))

    one = batch[:1]
    single, single_raw = [], []
    for i in range(20_000):
        row = batch[i % args.batch: i % args.batch + 1]
        t0 = time.perf_counter()
        model.score(row)
        single.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        raw.run(None, {name: one})
        single_raw.append(time.perf_counter() - t0)
    single.sort()
    single_raw.sort()

    def pct(xs: list[float], q: float) -> float:
        return xs[int(len(xs) * q)] * 1e6

    print(f"model {model.name}, {N_FEATURES} features")
    print(f"batched ({args.batch} windows): {np.median(rates):,.0f} windows/s "
          f"(session.run alone {np.median(raw_rates):,.0f}/s)")
    print(f"single window: p50 {pct(single, 0.5):.1f} us, p99 {pct(single, 0.99):.1f} us "
          f"(session.run alone p50 {pct(single_raw, 0.5):.1f} us, p99 {pct(single_raw, 0.99):.1f} us)")


if __name__ == "__main__":
    main()
