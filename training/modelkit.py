"""What both training scripts share: the evaluation figures, a byte-stable ONNX export, and
the record of what made the bytes (library versions and seeds)."""

import platform
import sys
from importlib.metadata import version

import numpy as np
import onnx

# Every library whose version can change the bytes of a model (scipy and threadpoolctl sit
# under scikit-learn's MLP; onnxruntime is not on the training path but scores the figures
# the hub trusts, so it is recorded too).
TRAINING_LIBRARIES = ("numpy", "scipy", "scikit-learn", "threadpoolctl", "skl2onnx", "onnx", "onnxruntime",
                      "protobuf")


def library_versions() -> dict[str, str]:
    """The installed versions of TRAINING_LIBRARIES, by distribution name."""
    return {name: version(name) for name in TRAINING_LIBRARIES}


def provenance(seed: int) -> dict[str, object]:
    """What a manifest records of its making. Retraining reproduces the bytes only with the
    same library versions (requirements/all.lock) on the same kind of processor."""
    return {
        "seed": seed,
        "libraries": library_versions(),
        "python": platform.python_version(),
        "machine": f"{sys.platform}-{platform.machine()}",
        "lock": "requirements/all.lock",
    }


def evaluate(pred: np.ndarray, truth: np.ndarray, classes: tuple[str, ...], *,
             typed: bool = True) -> dict[str, dict[str, float]]:
    """Precision and recall of 'anomalous' overall and per fault type. Recall of a type:
    its windows called anomalous. Precision of a type: for a typed detector (the model),
    its calls of that type that are right; for an untyped one (the baseline), its calls
    among that type's windows and the normal ones that fall on that type."""
    out: dict[str, dict[str, float]] = {}
    is_pred, is_true = pred > 0, truth > 0
    tp = int(np.sum(is_pred & is_true))
    out["any"] = {
        "precision": round(tp / max(1, int(is_pred.sum())), 4),
        "recall": round(tp / max(1, int(is_true.sum())), 4),
        "false_positive_rate": round(float(np.sum(is_pred & ~is_true)) / max(1, int((~is_true).sum())), 4),
    }
    for k, name in enumerate(classes[1:], start=1):
        mask = truth == k
        called = (pred == k) if typed else is_pred & ((truth == k) | (truth == 0))
        out[name] = {
            "recall": round(float(np.mean(is_pred[mask])), 4) if mask.any() else 0.0,
            "precision": round(float(np.sum(called & mask)) / max(1, int(called.sum())), 4),
            "windows": int(mask.sum()),
        }
    return out


def sort_opsets(model: onnx.ModelProto) -> onnx.ModelProto:
    """skl2onnx lists opset imports in set order, which varies between runs: sorted, the
    same seeds always give the same bytes (and the same sha256)."""
    opsets = sorted((o.domain, o.version) for o in model.opset_import)
    del model.opset_import[:]
    for domain, version in opsets:
        model.opset_import.add(domain=domain, version=version)
    return model
