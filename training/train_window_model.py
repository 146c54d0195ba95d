"""Train the hub's window anomaly model on labelled simulator data and export it to ONNX.

    pip install -e '.[train]'
    python training/train_window_model.py --out hub/models/window_anomaly

Faults are injected by the same simulators the demo runs (simulators/signals.py);
training uses seeds 0..N-1, evaluation uses held-out seeds. The manifest written beside
the model records the data seeds, the sha256 of the ONNX file, and precision / recall
per fault type against a z-score baseline. Runtime code never imports this file's
libraries (scikit-learn, skl2onnx, onnx): import-linter checks that.
"""

import argparse
import hashlib
import json
import os
import random
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # one summation order: the same seeds give the same bytes
# One set of BLAS kernels whatever the CPU: OpenBLAS picks AVX-512 kernels on a CPU that has
# them, and those round differently, so the shipped bytes came out different on such a machine.
# Haswell (AVX2) kernels run on every x86-64 CPU of the last decade; aarch64 builds ignore it.
os.environ.setdefault("OPENBLAS_CORETYPE", "Haswell")

import numpy as np  # noqa: E402
import onnx  # noqa: E402
from onnx import TensorProto, helper  # noqa: E402
from skl2onnx import to_onnx  # noqa: E402
from sklearn.neural_network import MLPClassifier  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from contract.classes import DeviceClass  # noqa: E402
from modelkit import evaluate, provenance, sort_opsets  # noqa: E402  (training/, beside this script)
from hub.features import FEATURE_NAMES, MIN_POINTS, batch_features, zscore_last  # noqa: E402
from simulators.signals import Device, Fault  # noqa: E402

CLASSES = ("normal", "spike", "stuck", "drift", "fire")
SCORED = {
    DeviceClass.TEMP_HUMIDITY: ("temperature", "humidity"),
    DeviceClass.SMOKE: ("smoke_density",),
    DeviceClass.BIN_FILL: ("fill_pct",),
    DeviceClass.AIR_QUALITY: ("pm2_5",),
}
WINDOW_S = 60.0


def make_windows(seed: int, n_series: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Series of every scored class, each with at most one fault; 60 s windows, labelled."""
    rng = random.Random(seed)
    windows: list[np.ndarray] = []
    labels: list[int] = []
    for i in range(n_series):
        device_class = rng.choice(list(SCORED))
        interval = rng.choice((1.0, 2.0, 5.0))
        length_s = 900.0
        kind = rng.choice(("none", "none", "spike", "stuck", "drift", "fire"))
        if kind == "fire" and device_class not in (DeviceClass.TEMP_HUMIDITY, DeviceClass.SMOKE):
            kind = "drift"
        faults: tuple[Fault, ...] = ()
        if kind != "none":
            start = rng.uniform(200, 600)
            faults = (Fault(kind, start, rng.uniform(60, 250), magnitude=rng.uniform(1.0, 3.0)),)
        device = Device(device_class, seed * 100_003 + i, faults)
        times = np.arange(0.0, length_s, interval)
        samples = [device.sample(float(t)) for t in times]
        for metric in SCORED[device_class]:
            series = np.array([s[metric] for s in samples])
            per_window = int(WINDOW_S / interval)
            if per_window < MIN_POINTS:
                continue
            for end in range(per_window, len(times), max(1, per_window // 3)):
                w_times = times[end - per_window:end]
                label = 0
                if faults:
                    f = faults[0]
                    active = np.mean([f.active(float(t)) for t in w_times])
                    # A window is faulty once the fault covers a fifth of it (its last sample for spikes).
                    if (f.kind == "spike" and f.active(float(w_times[-1]))) or (f.kind != "spike" and active >= 0.2):
                        label = CLASSES.index(f.kind)
                    elif active > 0:
                        continue  # ambiguous edge of a fault: neither normal nor faulty
                if label == CLASSES.index("spike"):
                    # A spike window is only labelled if its last sample actually spiked.
                    w = series[end - per_window:end]
                    if abs(w[-1] - np.median(w)) < 1.0:
                        continue
                windows.append(series[end - per_window:end])
                labels.append(label)
    return windows, np.array(labels)


SEED = 0  # the MLP's random_state; the data seeds are recorded beside it
ESTIMATOR = "signed log1p, StandardScaler, MLPClassifier(hidden_layer_sizes=(32, 16), max_iter=600)"


def squash(x: np.ndarray) -> np.ndarray:
    """sign(x) * log(1 + |x|): the features span orders of magnitude (a fire is z = 100s)."""
    return np.sign(x) * np.log1p(np.abs(x))


def with_squash(model: onnx.ModelProto) -> onnx.ModelProto:
    """Put :func:`squash` in front of the exported graph, so that the model file takes the
    hub's raw features (and the hub needs to know nothing about it)."""
    graph = model.graph
    inner = graph.input[0].name
    for node in graph.node:
        node.input[:] = ["X_squashed" if name == inner else name for name in node.input]
    graph.initializer.append(helper.make_tensor("one", TensorProto.FLOAT, [], [1.0]))
    prefix = [helper.make_node("Abs", ["X"], ["X_abs"]), helper.make_node("Add", ["X_abs", "one"], ["X_abs1"]),
              helper.make_node("Log", ["X_abs1"], ["X_log"]), helper.make_node("Sign", ["X"], ["X_sign"]),
              helper.make_node("Mul", ["X_sign", "X_log"], ["X_squashed"])]
    nodes = prefix + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    graph.input[0].name = "X"
    onnx.checker.check_model(model)
    return model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("hub/models/window_anomaly"))
    ap.add_argument("--train-seeds", type=int, default=6)
    ap.add_argument("--eval-seeds", type=int, default=3)
    ap.add_argument("--series", type=int, default=120)
    ap.add_argument("--threshold", type=float, default=0.8)
    args = ap.parse_args()

    train_seeds = list(range(args.train_seeds))
    eval_seeds = list(range(1000, 1000 + args.eval_seeds))
    xs, ys = zip(*(make_windows(s, args.series) for s in train_seeds))
    x_train = batch_features([w for ws in xs for w in ws])
    y_train = np.concatenate(ys)
    t0 = time.perf_counter()
    # A small network rather than trees: as good on held-out seeds (manifest), and its ONNX
    # graph is two matrix products (microseconds a window), where 200 trees cost far more.
    model = make_pipeline(StandardScaler(), MLPClassifier((32, 16), max_iter=600, random_state=SEED))
    model.fit(squash(x_train), y_train)
    fit_s = time.perf_counter() - t0

    ex, ey = zip(*(make_windows(s, args.series) for s in eval_seeds))
    eval_windows = [w for ws in ex for w in ws]
    y_eval = np.concatenate(ey)
    proba = model.predict_proba(squash(batch_features(eval_windows)))
    anomalous = 1.0 - proba[:, 0]
    pred = np.where(anomalous >= args.threshold, 1 + np.argmax(proba[:, 1:], axis=1), 0)
    z = np.array([zscore_last(w) for w in eval_windows])
    baseline = np.where(z > 3.0, 1, 0)

    onx = with_squash(to_onnx(model, squash(x_train[:1]).astype(np.float32), target_opset=17,
                              options={id(model.steps[-1][1]): {"zipmap": False}}))
    sort_opsets(onx)
    args.out.mkdir(parents=True, exist_ok=True)
    model_path = args.out / "model.onnx"
    model_path.write_bytes(onx.SerializeToString())
    manifest = {
        "name": "window_anomaly",
        "version": "2.1.0",
        "file": "model.onnx",
        "sha256": hashlib.sha256(model_path.read_bytes()).hexdigest(),
        "inputs": {"name": "X", "features": list(FEATURE_NAMES), "dtype": "float32", "window_s": WINDOW_S},
        "outputs": {"probabilities": list(CLASSES)},
        "threshold": args.threshold,
        "training": {
            "script": "training/train_window_model.py",
            "data": "simulators/signals.py with injected faults",
            "train_seeds": train_seeds, "eval_seeds": eval_seeds, "series_per_seed": args.series,
            "train_windows": int(len(y_train)), "eval_windows": int(len(y_eval)),
            "estimator": ESTIMATOR,
            "fit_seconds": round(fit_s, 2),
            **provenance(SEED),
        },
        "evaluation": {
            "model": evaluate(pred, y_eval, CLASSES),
            "zscore_baseline_last_point_gt3": evaluate(baseline, y_eval, CLASSES, typed=False),
        },
    }
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(json.dumps(manifest["evaluation"], indent=2))


if __name__ == "__main__":
    main()
