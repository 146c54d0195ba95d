"""Per-reading cost of the hub's learned normals (hub/normals/), on this machine.

    python benchmarks/normal_cost.py [--readings 20000] [--batch 10000]

A 2-channel device (temperature, humidity: a daily cycle plus noise, one reading a minute)
fitted on a day's warm-up, exported and loaded back as the hub does. Figures, µs per
reading (median of 5 rounds):

- stream, numpy: hub.normal's NormalStream.flag on the fitted numpy model;
- stream, ONNX: the same stream with the statistics run by onnxruntime from the export
  (what the hub runs);
- statistics only, batch of --batch rows: numpy and onnxruntime, per row;
- component: NormalDetectors.process (row assembly, ring buffer, stream, alarm edge) per reading;
- ingest's share: NormalDetectors.add, the append on ingest's hot path;
- one fit: fit, held-out evaluation, export and verified load, in ms.
"""

import argparse
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from hub.normal import NormalSettings, fit_normal
from hub.normals import NormalDetectors, NormalStore
from hub.normals.export import load_statistics
from hub.settings import NormalsSettings


def readings(n: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    phase = 2 * np.pi * (np.arange(n) % 1440) / 1440
    return np.column_stack((20 + 3 * np.sin(phase) + rng.normal(0, 0.5, n),
                            50 - 8 * np.sin(phase) + rng.normal(0, 1.5, n)))


def per_call_us(fn, n: int, rounds: int = 5) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) / n * 1e6)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--readings", type=int, default=20_000)
    ap.add_argument("--batch", type=int, default=10_000)
    args = ap.parse_args()
    warmup, rows = readings(1440), readings(args.readings, seed=2)
    normal = fit_normal(warmup, NormalSettings(false_alarm_budget=2 / 1440))
    with tempfile.TemporaryDirectory() as tmp:
        exported = NormalStore(Path(tmp), keep=1).export("bench-1", 1, normal.model, 2, {"inputs": {
            "channels": ["temperature", "humidity"]}})
        onnx_stats, _ = load_statistics(exported.folder)
        via_onnx = replace(normal, model=onnx_stats)  # type: ignore[arg-type]
        print(f"command: python benchmarks/normal_cost.py --readings {args.readings} --batch {args.batch}")
        print(f"stream, numpy:            {per_call_us(lambda: normal.stream(warmup).flag_all(rows), len(rows)):8.1f} µs/reading")
        print(f"stream, ONNX (the hub's): {per_call_us(lambda: via_onnx.stream(warmup).flag_all(rows), len(rows)):8.1f} µs/reading")
        batch = readings(args.batch, seed=3)
        print(f"statistics, batch {args.batch}, numpy: {per_call_us(lambda: normal.model.statistics(batch), len(batch)):8.3f} µs/row")
        print(f"statistics, batch {args.batch}, ONNX:  {per_call_us(lambda: onnx_stats.statistics(batch), len(batch)):8.3f} µs/row")

        settings = NormalsSettings(enabled=True, warmup_readings=1440, warmup_min_s=0, refit_s=1e12)
        t0 = 1_700_000_000.0
        warm = [(t0 + 60.0 * i, "b1-th-01", "temp_humidity", {"temperature": float(t), "humidity": float(h)})
                for i, (t, h) in enumerate(warmup)]
        live = [(t0 + 60.0 * (1440 + i), "b1-th-01", "temp_humidity", {"temperature": float(t), "humidity": float(h)})
                for i, (t, h) in enumerate(rows)]
        detectors = NormalDetectors(settings, NormalStore(Path(tmp) / "c", keep=1))
        start = time.perf_counter()
        detectors.process(warm)  # the fit falls due on the last warm-up reading
        fit_ms = (time.perf_counter() - start) * 1e3
        print(f"component, process:       {per_call_us(lambda: detectors.process(live), len(live), rounds=1):8.1f} µs/reading")

        def add_all() -> None:
            for ts, device, cls, values in live:
                detectors.add(device, cls, ts, values)
            detectors.take()

        print(f"ingest's share, add:      {per_call_us(add_all, len(live)):8.3f} µs/reading")
        print(f"warm-up of 1440 readings and one fit (fit, held-out evaluation, export, verified load): {fit_ms:.0f} ms")


if __name__ == "__main__":
    main()
