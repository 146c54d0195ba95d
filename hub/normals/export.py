"""A fitted normal as an ONNX graph, governed like the shipped models.

Each fit is written to ``<root>/<device>/<version>/`` as ``normal.onnx`` and a
``manifest.json`` naming it with its sha256; the hub then scores through onnxruntime
from that file, loaded back and verified against the manifest (:func:`load_statistics`).

The graph computes what :meth:`hub.normal.NormalModel.statistics` computes, in float64::

    features (n x all channels)
      -> Gather(channels, axis 1) -> Sub(mean) -> Div(scale)      = z
      -> MatMul(components)                                       = s
      -> Mul(s, s) -> Div(variances) -> ReduceSum(axis 1)         = t2
      z - MatMul(s, componentsᵀ) -> Mul(r, r) -> ReduceSum(axis 1) = q
"""

import hashlib
import json
import logging
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hub.inference import ModelError, read_verified, session
from hub.normal import NormalModel

if TYPE_CHECKING:
    import onnx

__all__ = ["MODEL_FILE", "NormalStore", "OnnxStatistics", "load_statistics", "statistics_graph"]

log = logging.getLogger(__name__)

MODEL_FILE = "normal.onnx"
_OPSET = 17
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")  # a device id or version as a folder name


def statistics_graph(model: NormalModel, n_inputs: int, name: str) -> "onnx.ModelProto":
    """The T² and Q graph of ``model`` for rows of ``n_inputs`` channels."""
    # Imported here: onnx (about 12 MB and 0.7 s at import) is only needed by a hub that
    # fits normals, not by every hub that imports this package.
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    init = [numpy_helper.from_array(np.asarray(a, dtype=dtype), n) for n, a, dtype in (
        ("channels", model.channels, np.int64), ("mean", model.mean, np.float64),
        ("scale", model.scale, np.float64), ("components", model.components, np.float64),
        ("components_t", model.components.T, np.float64), ("variances", model.variances, np.float64),
        ("axis", [1], np.int64))]
    nodes = [
        helper.make_node("Gather", ["features", "channels"], ["x"], axis=1),
        helper.make_node("Sub", ["x", "mean"], ["centred"]),
        helper.make_node("Div", ["centred", "scale"], ["z"]),
        helper.make_node("MatMul", ["z", "components"], ["s"]),
        helper.make_node("Mul", ["s", "s"], ["s2"]),
        helper.make_node("Div", ["s2", "variances"], ["s2v"]),
        helper.make_node("ReduceSum", ["s2v", "axis"], ["t2"], keepdims=0),
        helper.make_node("MatMul", ["s", "components_t"], ["projected"]),
        helper.make_node("Sub", ["z", "projected"], ["residual"]),
        helper.make_node("Mul", ["residual", "residual"], ["r2"]),
        helper.make_node("ReduceSum", ["r2", "axis"], ["q"], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes, name, [helper.make_tensor_value_info("features", TensorProto.DOUBLE, ["n", n_inputs])],
        [helper.make_tensor_value_info("t2", TensorProto.DOUBLE, ["n"]),
         helper.make_tensor_value_info("q", TensorProto.DOUBLE, ["n"])], init)
    proto = helper.make_model(graph, producer_name="midbrain-hub", opset_imports=[helper.make_opsetid("", _OPSET)])
    proto.ir_version = 8  # what onnxruntime releases since 1.14 read
    onnx.checker.check_model(proto)
    return proto


class OnnxStatistics:
    """A :class:`NormalModel` stand-in whose :meth:`statistics` runs the exported graph."""

    def __init__(self, model_bytes: bytes, n_inputs: int) -> None:
        self._session = session(model_bytes)
        self.n_inputs = n_inputs

    def statistics(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """T² and Q of each row (rows x all channels), as NormalModel.statistics."""
        t2, q = self._session.run(None, {"features": np.atleast_2d(np.asarray(rows, dtype=np.float64))})
        return t2, q


def load_statistics(folder: Path) -> tuple[OnnxStatistics, dict[str, Any]]:
    """The exported model in ``folder``, verified against its manifest; and the manifest.

    ModelError if the manifest or the file cannot be read, or the file's sha256 is not the
    manifest's (a file changed after export is refused)."""
    manifest, model_bytes, _ = read_verified(folder, "the normal")
    try:
        n_inputs = len(manifest["inputs"]["channels"])
    except (KeyError, TypeError) as exc:
        raise ModelError(f"cannot read the normal in {folder}: {exc}") from exc
    try:
        return OnnxStatistics(model_bytes, n_inputs), manifest
    except Exception as exc:  # onnxruntime's own errors (a graph it cannot load)
        raise ModelError(f"{folder}: onnxruntime refused the graph: {exc}") from exc


@dataclass(frozen=True, slots=True)
class Exported:
    folder: Path
    name: str
    version: str
    sha256: str


class NormalStore:
    """The folders of exported normals: ``<root>/<device>/<version>/``, the newest kept."""

    def __init__(self, root: Path, keep: int) -> None:
        self.root = root
        self.keep = keep

    def next_sequence(self, device: str) -> int:
        """One past the highest sequence exported for ``device`` (on disk, across restarts)."""
        seqs = [int(p.name.rsplit(".", 1)[1]) for p in self._versions(device)]
        return max(seqs, default=0) + 1

    def latest(self, device: str) -> Path | None:
        """The folder of the newest version exported for ``device``, if any."""
        versions = self._versions(device)
        return versions[-1] if versions else None

    def _versions(self, device: str) -> list[Path]:
        folder = self.root / _safe(device)
        if not folder.is_dir():
            return []
        found = [p for p in folder.iterdir() if p.is_dir() and p.name.rsplit(".", 1)[-1].isdigit()]
        return sorted(found, key=lambda p: int(p.name.rsplit(".", 1)[1]))

    def export(self, device: str, seq: int, model: NormalModel, n_inputs: int, manifest: dict[str, Any]) -> Exported:
        """Write the graph and its manifest (manifest last), prune older versions; where."""
        version = f"{_safe(device)}.{seq}"
        name = f"normal-{device}"
        folder = self.root / _safe(device) / version
        model_bytes = statistics_graph(model, n_inputs, name).SerializeToString()
        digest = hashlib.sha256(model_bytes).hexdigest()
        folder.mkdir(parents=True, exist_ok=True)
        (folder / MODEL_FILE).write_bytes(model_bytes)
        full = {"name": name, "version": version, "file": MODEL_FILE, "sha256": digest, **manifest}
        tmp = folder / "manifest.json.tmp"
        tmp.write_text(json.dumps(full, indent=2, ensure_ascii=False, default=_plain))
        tmp.replace(folder / "manifest.json")
        for old in self._versions(device)[:-self.keep]:
            shutil.rmtree(old, ignore_errors=True)
            log.info("normal of %s: pruned %s", device, old.name)
        return Exported(folder, name, version, digest)


def _plain(value: Any) -> Any:
    """numpy scalars as JSON numbers."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON")


def _safe(name: str) -> str:
    if not _SAFE_NAME.match(name):
        raise ModelError(f"{name!r} cannot name a model folder")
    return name
