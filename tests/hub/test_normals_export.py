"""A learned normal exported to ONNX: the graph computes numpy's T² and Q, its manifest
governs it (hash, version, channels, limits, evaluation, libraries), and a file changed
after export is refused."""

import json
from pathlib import Path

import numpy as np
import pytest

from hub.inference import ModelError
from hub.normal import NormalSettings, fit_normal
from hub.normals import NormalDetectors, NormalStore
from hub.normals.export import MODEL_FILE, load_statistics
from hub.settings import NormalsSettings

pytestmark = pytest.mark.unit


def _correlated(rng: np.random.Generator, n: int, channels: int) -> np.ndarray:
    return rng.normal(size=(n, channels)) @ rng.normal(size=(channels, channels)) + rng.normal(size=channels) * 10


@pytest.mark.parametrize("channels", [1, 3, 8])
def test_onnx_statistics_equal_numpys_to_1e_9(tmp_path: Path, channels: int) -> None:
    rng = np.random.default_rng(channels)
    rows = _correlated(rng, 500, channels)
    rows[:, 0] = 1.5 if channels > 1 else rows[:, 0]  # a channel that never varies is left out by the fit
    normal = fit_normal(rows, NormalSettings(slow_lag=0))
    exported = NormalStore(tmp_path, keep=2).export("dev-1", 1, normal.model, channels, {"inputs": {
        "channels": [f"c{i}" for i in range(channels)]}})
    onnx_stats, manifest = load_statistics(exported.folder)
    test = _correlated(rng, 2000, channels) * rng.uniform(0.5, 3.0)
    t2, q = normal.model.statistics(test)
    ot2, oq = onnx_stats.statistics(test)
    np.testing.assert_allclose(ot2, t2, rtol=1e-9)
    np.testing.assert_allclose(oq, q, rtol=1e-9, atol=1e-12 * float(np.max(q, initial=1.0)))
    one_t2, one_q = onnx_stats.statistics(test[7])  # one reading, as a stream scores it
    assert one_t2.shape == (1,) and one_t2[0] == pytest.approx(t2[7], rel=1e-9)
    assert manifest["version"] == "dev-1.1" and manifest["name"] == "normal-dev-1"


def test_a_tampered_file_or_manifest_is_refused(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    normal = fit_normal(_correlated(rng, 300, 3), NormalSettings(slow_lag=0))
    exported = NormalStore(tmp_path, keep=2).export("dev-1", 1, normal.model, 3, {"inputs": {"channels": ["a", "b", "c"]}})
    load_statistics(exported.folder)  # as exported: loads
    model = exported.folder / MODEL_FILE
    data = bytearray(model.read_bytes())
    data[-20] ^= 0x01  # one bit of the graph's weights
    model.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="does not match manifest"):
        load_statistics(exported.folder)
    (exported.folder / "manifest.json").write_text("{not json")
    with pytest.raises(ModelError, match="cannot read"):
        load_statistics(exported.folder)


def test_each_fit_is_exported_with_its_manifest_and_old_versions_are_pruned(tmp_path: Path) -> None:
    settings = NormalsSettings(enabled=True, warmup_readings=200, warmup_min_s=0, refit_s=600, keep_versions=2)
    detectors = NormalDetectors(settings, NormalStore(tmp_path / "normals", settings.keep_versions))
    rng = np.random.default_rng(2)
    t0 = 1_700_000_000.0
    readings = [(t0 + 10.0 * i, "b1-elev-01", "elevator", {
        "running": float(i % 7 < 4), "floor": float(rng.integers(1, 12)), "door_open": float(i % 7 == 5),
        "fault_code": 0.0}) for i in range(500)]
    detectors.process(readings)  # warm-up fit at 200, refits every 600 s (60 readings)
    status = detectors.status()[0]
    assert status["fits"] == 6 and status["model_version"] == "b1-elev-01.6"
    folders = sorted(p.name for p in (tmp_path / "normals" / "b1-elev-01").iterdir())
    assert folders == ["b1-elev-01.5", "b1-elev-01.6"]  # keep_versions = 2
    manifest = json.loads((tmp_path / "normals" / "b1-elev-01" / "b1-elev-01.6" / "manifest.json").read_text())
    assert manifest["name"] == "normal-b1-elev-01" and manifest["sha256"] == status["sha256"]
    assert manifest["inputs"]["channels"] == ["running", "floor", "door_open", "fault_code"]
    assert 3 not in manifest["used_channels"]  # fault_code never varied
    assert manifest["limits"]["t2"] > 0 and manifest["limits"]["q"] > 0 and manifest["limits"]["widen"] == 1.0
    assert manifest["settings"]["cadence_s"] == 10.0 and 0 < manifest["settings"]["false_alarm_budget"] <= 0.5
    assert manifest["warmup"]["rows"] >= 200 and manifest["warmup"]["to"] > manifest["warmup"]["from"]
    evaluation = manifest["evaluation"]
    assert evaluation["readings"] == manifest["warmup"]["rows"] and 0 <= evaluation["flagged_share"] <= 1
    assert evaluation["alerts_per_week"] >= 0
    assert set(manifest["libraries"]) == {"numpy", "onnx", "onnxruntime"}
    # A restarted hub continues the sequence rather than overwriting a version.
    assert NormalStore(tmp_path / "normals", 2).next_sequence("b1-elev-01") == 7


def test_the_stream_through_onnx_flags_as_the_numpy_stream_does(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    rows = np.cumsum(rng.normal(size=(600, 2)), axis=0) * 0.1 + rng.normal(size=(600, 2))
    normal = fit_normal(rows[:400])
    exported = NormalStore(tmp_path, keep=1).export("dev-2", 1, normal.model, 2, {"inputs": {"channels": ["a", "b"]}})
    onnx_stats, _ = load_statistics(exported.folder)
    from dataclasses import replace

    tail = rows[400:] + np.where(np.arange(200)[:, None] > 120, 5.0, 0.0)
    numpy_scores = normal.stream(rows[:400]).score_all(tail)
    onnx_scores = replace(normal, model=onnx_stats).stream(rows[:400]).score_all(tail)  # type: ignore[arg-type]
    np.testing.assert_allclose(onnx_scores, numpy_scores, rtol=1e-9)
    assert (numpy_scores > 1).any()


def test_a_device_id_that_cannot_name_a_folder_is_refused(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    normal = fit_normal(_correlated(rng, 300, 2), NormalSettings(slow_lag=0))
    with pytest.raises(ModelError, match="cannot name a model folder"):
        NormalStore(tmp_path, keep=1).export("../evil", 1, normal.model, 2, {"inputs": {"channels": ["a", "b"]}})


def test_a_hub_that_fits_no_normal_does_not_load_onnx() -> None:
    """onnx costs about 12 MB of RSS and 0.7 s at import: only a fit may bring it in."""
    import subprocess
    import sys

    probe = "import sys, hub.service, hub.normals.export; print('onnx' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
