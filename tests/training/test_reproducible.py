"""The shipped model is what the training script makes from its recorded seeds."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from hub.inference import DEFAULT_MODEL_DIR
from tests.conftest import REPO

pytestmark = pytest.mark.real


def test_retraining_reproduces_the_shipped_model(tmp_path: Path) -> None:
    shipped = json.loads((DEFAULT_MODEL_DIR / "manifest.json").read_text())
    training = shipped["training"]
    subprocess.run([sys.executable, str(REPO / "training" / "train_window_model.py"), "--out", str(tmp_path),
                    "--train-seeds", str(len(training["train_seeds"])),
                    "--eval-seeds", str(len(training["eval_seeds"])),
                    "--series", str(training["series_per_seed"])],
                   check=True, capture_output=True, timeout=600)
    assert hashlib.sha256((tmp_path / "model.onnx").read_bytes()).hexdigest() == shipped["sha256"]
    assert json.loads((tmp_path / "manifest.json").read_text())["evaluation"] == shipped["evaluation"]
