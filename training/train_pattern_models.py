"""Train the hub's two pattern detectors on labelled simulator data and export them to ONNX.

    pip install -e '.[train]'
    python training/train_pattern_models.py --out hub/models

- ``water_leak``: a household water meter's night (23:00-05:00 local) from its cumulative
  register; a leak is a continuous base flow (simulators/signals.py, fault ``leak``).
  Half the meters report like the MQTT simulators (every minute), half like CJ/T 188
  meters behind an edge agent (polled every 5 minutes, 0.01 m³ resolution, reported on a
  change or hourly).
- ``elevator_fault``: a car's last minute of running / floor / door; faults ``car_stuck``
  (running, no floor change) and ``door_fault`` (doors cycling, car not leaving).

Training uses seeds 0..N-1, evaluation held-out seeds 1000...; each manifest records the
seeds, the sha256 of its ONNX file, and precision / recall per fault type for the model
and for a z-score baseline (the last point's z-score over the window above 3).
"""

import argparse
import hashlib
import json
import os
import random
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # one summation order: the same seeds give the same bytes
# One set of BLAS kernels whatever the CPU: OpenBLAS picks AVX-512 kernels on a CPU that has
# them, and those round differently, so the shipped bytes came out different on such a machine.
# Haswell (AVX2) kernels run on every x86-64 CPU of the last decade; aarch64 builds ignore it.
os.environ.setdefault("OPENBLAS_CORETYPE", "Haswell")

import numpy as np  # noqa: E402
from skl2onnx import to_onnx  # noqa: E402
from sklearn.neural_network import MLPClassifier  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from contract.classes import DeviceClass  # noqa: E402
from hub.features import (  # noqa: E402
    ELEVATOR_FEATURE_NAMES,
    ELEVATOR_MIN_POINTS,
    LEAK_FEATURE_NAMES,
    LEAK_MIN_POINTS,
    elevator_features,
    leak_features,
    zscore_last,
)
from modelkit import evaluate, provenance, sort_opsets  # noqa: E402  (training/, beside this script)
from simulators.signals import UTC_OFFSET_S, Device, Fault, is_night, local_hour  # noqa: E402

LEAK_WINDOW_S = 3 * 3600.0
ELEVATOR_WINDOW_S = 60.0
SEED = 0  # the MLP's random_state; the data seeds are recorded beside it
ESTIMATOR = "StandardScaler, MLPClassifier(hidden_layer_sizes=(16,), max_iter=800)"

Sample = tuple[np.ndarray, int, float]  # features, label, baseline z


def leak_samples(seed: int, meters: int) -> list[Sample]:
    rng = random.Random(seed)
    out: list[Sample] = []
    for i in range(meters):
        leaking = rng.random() < 0.4
        faults = (Fault("leak", 0.0, 1e9, magnitude=rng.uniform(0.5, 3.0)),) if leaking else ()
        day = 1_790_000_000 // 86400 * 86400 + rng.randrange(0, 60) * 86400
        start = day + 22 * 3600 - UTC_OFFSET_S  # 22:00 local
        device = Device(DeviceClass.WATER_METER, seed * 100_003 + i, faults, start_epoch=start)
        cjt188 = rng.random() < 0.5
        step = 300.0 if cjt188 else 60.0
        ts: list[float] = []
        totals: list[float] = []
        last_sent_t, last_sent_v = -1e9, -1.0
        for t in np.arange(0.0, 8 * 3600.0, 10.0):  # the meter's own clock: fine steps
            value = device.sample(float(t))["total_m3"]
            if t % step:
                continue
            if cjt188:  # the register in 0.01 m³, reported on change or hourly
                value = round(value, 2)
                if value == last_sent_v and t - last_sent_t < 3600:
                    continue
            ts.append(start + float(t))
            totals.append(value)
            last_sent_t, last_sent_v = t, value
        t_arr, v_arr = np.array(ts), np.array(totals)
        for end in np.arange(start + 3600.0, start + 8 * 3600.0, 1800.0):
            if not is_night(local_hour(end)):
                continue
            sel = (t_arr <= end) & (t_arr > end - LEAK_WINDOW_S) & np.array([is_night(local_hour(x)) for x in t_arr])
            if sel.sum() < LEAK_MIN_POINTS:
                continue
            wt, wv = t_arr[sel], v_arr[sel]
            rate = np.diff(wv) / np.maximum(np.diff(wt), 1.0)
            z = zscore_last(rate) if rate.size >= 3 else 0.0
            out.append((leak_features(wt, wv, LEAK_WINDOW_S), int(leaking), z))
    return out


ELEVATOR_CLASSES = ("normal", "car_stuck", "door_fault")


def elevator_samples(seed: int, cars: int) -> list[Sample]:
    rng = random.Random(seed)
    out: list[Sample] = []
    for i in range(cars):
        kind = rng.choice(("none", "none", "car_stuck", "door_fault"))
        fault = Fault(kind, rng.uniform(200, 500), rng.uniform(90, 300)) if kind != "none" else None
        start = 1_790_000_000 + rng.uniform(0, 86400)  # any time of day
        device = Device(DeviceClass.ELEVATOR, seed * 100_003 + i, (fault,) if fault else (), start_epoch=start)
        interval = rng.choice((2.0, 5.0))
        times = np.arange(0.0, 900.0, interval)
        samples = [device.sample(float(t)) for t in times]
        running = np.array([s["running"] for s in samples])
        floor = np.array([s["floor"] for s in samples])
        door = np.array([s["door_open"] for s in samples])
        per_window = int(ELEVATOR_WINDOW_S / interval)
        for end in range(per_window, len(times), max(1, per_window // 3)):
            w = slice(end - per_window, end)
            label = 0
            if fault is not None:
                active = np.mean([fault.active(float(t)) for t in times[w]])
                if active >= 0.75:
                    label = ELEVATOR_CLASSES.index(fault.kind)
                elif active > 0:
                    continue  # the edge of a fault: neither normal nor faulty
            if per_window < ELEVATOR_MIN_POINTS:
                continue
            feats = elevator_features(times[w], running[w], floor[w], door[w])
            out.append((feats, label, zscore_last(floor[w])))
    return out


def train_one(name: str, version: str, classes: tuple[str, ...], features: tuple[str, ...],
              make: Callable[[int, int], list[Sample]], per_seed: int, args: argparse.Namespace,
              inputs: dict[str, object], data: str) -> dict[str, object]:
    train_seeds = list(range(args.train_seeds))
    eval_seeds = list(range(1000, 1000 + args.eval_seeds))
    train = [s for seed in train_seeds for s in make(seed, per_seed)]
    held = [s for seed in eval_seeds for s in make(seed, per_seed)]
    x_train = np.stack([f for f, _, _ in train])
    y_train = np.array([y for _, y, _ in train])
    t0 = time.perf_counter()
    model = make_pipeline(StandardScaler(), MLPClassifier((16,), max_iter=800, random_state=SEED))
    model.fit(x_train, y_train)
    fit_s = time.perf_counter() - t0

    x_eval = np.stack([f for f, _, _ in held])
    y_eval = np.array([y for _, y, _ in held])
    proba = model.predict_proba(x_eval)
    anomalous = 1.0 - proba[:, 0]
    pred = np.where(anomalous >= args.threshold, 1 + np.argmax(proba[:, 1:], axis=1), 0)
    z = np.array([z for _, _, z in held])
    baseline = np.where(z > 3.0, 1, 0)  # says "anomalous", names no type

    onx = sort_opsets(to_onnx(model, x_train[:1].astype(np.float32), target_opset=17,
                              options={id(model.steps[-1][1]): {"zipmap": False}}))
    out = args.out / name
    out.mkdir(parents=True, exist_ok=True)
    (out / "model.onnx").write_bytes(onx.SerializeToString())
    manifest = {
        "name": name,
        "version": version,
        "file": "model.onnx",
        "sha256": hashlib.sha256((out / "model.onnx").read_bytes()).hexdigest(),
        "inputs": {"name": onx.graph.input[0].name, "features": list(features), "dtype": "float32", **inputs},
        "outputs": {"probabilities": list(classes)},
        "threshold": args.threshold,
        "training": {
            "script": "training/train_pattern_models.py",
            "data": data,
            "train_seeds": train_seeds, "eval_seeds": eval_seeds, "series_per_seed": per_seed,
            "train_windows": len(train), "eval_windows": len(held),
            "estimator": ESTIMATOR,
            "fit_seconds": round(fit_s, 2),
            **provenance(SEED),
        },
        "evaluation": {
            "model": evaluate(pred, y_eval, classes),
            "zscore_baseline_last_point_gt3": evaluate(baseline, y_eval, classes, typed=False),
        },
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("hub/models"))
    ap.add_argument("--train-seeds", type=int, default=6)
    ap.add_argument("--eval-seeds", type=int, default=3)
    ap.add_argument("--threshold", type=float, default=0.8)
    args = ap.parse_args()
    leak = train_one(
        "water_leak", "1.0.0", ("normal", "water_leak"), LEAK_FEATURE_NAMES, leak_samples, 80, args,
        {"device_class": "water_meter", "metrics": ["total_m3"], "window_s": LEAK_WINDOW_S,
         "min_points": LEAK_MIN_POINTS, "night_only": True},
        "simulators/signals.py household meters with and without a leak, MQTT-style and CJ/T 188-style reporting")
    elevator = train_one(
        "elevator_fault", "1.0.0", ELEVATOR_CLASSES, ELEVATOR_FEATURE_NAMES, elevator_samples, 120, args,
        {"device_class": "elevator", "metrics": ["running", "floor", "door_open"], "window_s": ELEVATOR_WINDOW_S,
         "min_points": ELEVATOR_MIN_POINTS, "night_only": False},
        "simulators/signals.py elevator cars with injected car_stuck and door_fault")
    print(json.dumps({"water_leak": leak["evaluation"], "elevator_fault": elevator["evaluation"]}, indent=2))


if __name__ == "__main__":
    main()
