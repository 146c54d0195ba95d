"""Load an ONNX model described by its manifest, verify it, and score feature batches."""

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from hub.features import FEATURE_NAMES

log = logging.getLogger(__name__)

MODELS = Path(__file__).parent / "models"
DEFAULT_MODEL_DIR = MODELS / "window_anomaly"


class ModelError(Exception):
    """A model that must not be loaded, with the reason."""


@dataclass(frozen=True, slots=True)
class Scores:
    anomalous: np.ndarray  # 1 - P(normal), shape (n,)
    kinds: list[str]  # most likely fault kind per row


def read_verified(folder: Path, what: str) -> tuple[dict[str, Any], bytes, str]:
    """A model folder's manifest, its model file's bytes and their sha256, verified: ModelError
    if either cannot be read or the file's sha256 is not the manifest's (a file changed after
    it was made is refused). Every ONNX model the hub loads goes through here."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
        model_bytes = (folder / manifest["file"]).read_bytes()
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"cannot read {what} in {folder}: {exc}") from exc
    digest = hashlib.sha256(model_bytes).hexdigest()
    if digest != manifest.get("sha256"):
        raise ModelError(f"{folder}: sha256 {digest} does not match manifest {manifest.get('sha256')}")
    return manifest, model_bytes, digest


def session(model_bytes: bytes) -> ort.InferenceSession:
    """One onnxruntime session on one thread that does not spin: the hub scores small
    batches from its event loop's worker threads, beside ingest."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])


class WindowModel:
    """One onnxruntime session, created once; verified against its manifest first."""

    def __init__(self, model_dir: Path | None = None, features: tuple[str, ...] = FEATURE_NAMES) -> None:
        model_dir = model_dir or DEFAULT_MODEL_DIR
        self.manifest, model_bytes, digest = read_verified(model_dir, "model")
        if tuple(self.manifest["inputs"]["features"]) != features:
            raise ModelError(f"{model_dir}: model features {self.manifest['inputs']['features']} "
                             f"differ from the hub's {list(features)}")
        self._session = session(model_bytes)
        self._input = self._session.get_inputs()[0].name
        self.classes: list[str] = list(self.manifest["outputs"]["probabilities"])
        self.name = f"{self.manifest['name']}@{self.manifest['version']}"
        self.sha256 = digest
        log.info("loaded model %s (sha256 %s)", self.name, digest[:12])

    @staticmethod
    def manifest_sha256(model_dir: Path | None) -> str | None:
        """The sha256 a model folder's manifest announces now (None if it cannot be read):
        cheap to poll, so that a new version is noticed without loading it."""
        try:
            return str(json.loads(((model_dir or DEFAULT_MODEL_DIR) / "manifest.json").read_text()).get("sha256"))
        except (OSError, ValueError, AttributeError):
            return None

    def score(self, features: np.ndarray) -> Scores:
        if len(features) == 0:
            return Scores(np.zeros(0, dtype=np.float32), [])
        _, proba = self._session.run(None, {self._input: features.astype(np.float32, copy=False)})
        kinds = [self.classes[1 + int(i)] for i in np.argmax(proba[:, 1:], axis=1)]
        return Scores(1.0 - proba[:, 0], kinds)
