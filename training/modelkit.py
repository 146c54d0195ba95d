"""What both training scripts share: the evaluation figures and a byte-stable ONNX export."""

import numpy as np
import onnx


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
