"""The anomaly model: governed loading and behaviour on the faults it was trained for."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from contract.classes import DeviceClass
from hub.features import batch_features
from hub.inference import DEFAULT_MODEL_DIR, ModelError, WindowModel
from simulators.signals import Device, Fault



def _window(fault: Fault | None, seed: int) -> np.ndarray:
    device = Device(DeviceClass.TEMP_HUMIDITY, seed, (fault,) if fault else ())
    return np.array([device.sample(float(t))["temperature"] for t in range(0, 300, 2)][-30:])


@pytest.mark.unit
def test_manifest_records_provenance_and_evaluation() -> None:
    manifest = json.loads((DEFAULT_MODEL_DIR / "manifest.json").read_text())
    assert manifest["training"]["train_seeds"] and manifest["training"]["eval_seeds"]
    assert not set(manifest["training"]["train_seeds"]) & set(manifest["training"]["eval_seeds"])
    model, base = manifest["evaluation"]["model"]["any"], manifest["evaluation"]["zscore_baseline_last_point_gt3"]["any"]
    assert model["recall"] > base["recall"] and model["precision"] > base["precision"]


@pytest.mark.unit
def test_a_model_whose_hash_does_not_match_is_refused(tmp_path: Path) -> None:
    shutil.copytree(DEFAULT_MODEL_DIR, tmp_path / "m")
    model_file = tmp_path / "m" / "model.onnx"
    model_file.write_bytes(model_file.read_bytes() + b"\x00")
    with pytest.raises(ModelError, match="sha256 .* does not match manifest"):
        WindowModel(tmp_path / "m")


@pytest.mark.unit
def test_fire_and_stuck_windows_score_high_normal_windows_low() -> None:
    model = WindowModel()
    normal = [_window(None, s) for s in range(20)]
    fire = [_window(Fault("fire", 240, 100), s) for s in range(20)]
    stuck = [_window(Fault("stuck", 200, 200), s) for s in range(20)]
    scores = model.score(batch_features(normal + fire + stuck))
    assert np.mean(scores.anomalous[:20] >= 0.8) <= 0.1
    assert np.mean(scores.anomalous[20:40] >= 0.8) >= 0.9
    assert np.mean(scores.anomalous[40:] >= 0.8) >= 0.8
    assert scores.kinds[20:40].count("fire") >= 15


@pytest.mark.real
def test_the_hub_refuses_to_start_with_a_tampered_model(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from tests.conftest import DEMO_CONFIG

    shutil.copytree(DEFAULT_MODEL_DIR, tmp_path / "m")
    (tmp_path / "m" / "model.onnx").write_bytes((tmp_path / "m" / "model.onnx").read_bytes()[:-1])
    env = {**os.environ, "MIDBRAIN_HUB__MODEL_DIR": str(tmp_path / "m"), "MIDBRAIN_HUB__HTTP_PORT": "0",
           "MIDBRAIN_HUB__DATABASE": str(tmp_path / "hub.sqlite3")}
    result = subprocess.run([sys.executable, "-m", "midbrain.cli", "hub", "--config", str(DEMO_CONFIG)],
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "hub: refusing to start:" in result.stderr and "does not match manifest" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.unit
def test_the_readme_publishes_the_manifests_figures() -> None:
    from tests.conftest import REPO

    evaluation = json.loads((DEFAULT_MODEL_DIR / "manifest.json").read_text())["evaluation"]
    readme = (REPO / "README.md").read_text()
    for label, key in (("| model |", "model"), ("| z-score of the last point > 3 |", "zscore_baseline_last_point_gt3")):
        e = evaluation[key]
        figures = [e["any"]["precision"], e["any"]["recall"], e["any"]["false_positive_rate"],
                   *(e[f]["recall"] for f in ("spike", "stuck", "drift", "fire"))]
        row = label + "".join(f" {v:.3f} |" for v in figures)
        assert row in readme, f"README row out of date; expected: {row}"


@pytest.mark.unit
def test_the_readme_publishes_the_pattern_models_figures() -> None:
    from hub.inference import MODELS
    from tests.conftest import REPO

    readme = (REPO / "README.md").read_text()
    for name, kinds in (("water_leak", ["water_leak"]), ("elevator_fault", ["car_stuck", "door_fault"])):
        evaluation = json.loads((MODELS / name / "manifest.json").read_text())["evaluation"]
        for label, key in (("| model |", "model"), ("| z-score of the last point > 3 |", "zscore_baseline_last_point_gt3")):
            e = evaluation[key]
            row = label + "".join(f" {e[k]['precision']:.3f} | {e[k]['recall']:.3f} |" for k in kinds)
            assert row in readme, f"README row out of date; expected: {row}"
