"""Load an ONNX model described by its manifest, verify it, and score feature batches."""

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

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


class WindowModel:
    """One onnxruntime session, created once; verified against its manifest first."""

    def __init__(self, model_dir: Path | None = None, features: tuple[str, ...] = FEATURE_NAMES) -> None:
        model_dir = model_dir or DEFAULT_MODEL_DIR
        manifest_path = model_dir / "manifest.json"
        try:
            self.manifest = json.loads(manifest_path.read_text())
            model_bytes = (model_dir / self.manifest["file"]).read_bytes()
        except (OSError, ValueError, KeyError) as exc:
            raise ModelError(f"cannot read model in {model_dir}: {exc}") from exc
        digest = hashlib.sha256(model_bytes).hexdigest()
        if digest != self.manifest.get("sha256"):
            raise ModelError(f"{model_dir}: sha256 {digest} does not match manifest {self.manifest.get('sha256')}")
        if tuple(self.manifest["inputs"]["features"]) != features:
            raise ModelError(f"{model_dir}: model features {self.manifest['inputs']['features']} "
                             f"differ from the hub's {list(features)}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
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
