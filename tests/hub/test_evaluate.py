"""`midbrain evaluate` on small data sets in the NAB and SKAB formats, made here (the real
ones are read from ../shared/data, never copied: docs/hub.md has their figures)."""

import json
import math
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest

pytestmark = pytest.mark.real


def _nab(root: Path) -> None:
    data = root / "nab" / "data" / "realKnownCause"
    data.mkdir(parents=True)
    (root / "nab" / "labels").mkdir()
    t0 = datetime(2014, 1, 1)
    for name in ("machine_temperature_system_failure.csv", "ambient_temperature_system_failure.csv"):
        lines = ["timestamp,value"]
        for i in range(400):
            value = 20 + math.sin(i / 10) + (15 if 300 <= i < 310 else 0)  # a jump the detectors should see
            lines.append(f"{(t0 + timedelta(hours=i)).isoformat(sep=' ')},{value:.3f}")
        (data / name).write_text("\n".join(lines) + "\n")
    windows = {f"realKnownCause/{name}": [[(t0 + timedelta(hours=300)).isoformat(sep=" "),
                                           (t0 + timedelta(hours=309)).isoformat(sep=" ")]]
               for name in ("machine_temperature_system_failure.csv", "ambient_temperature_system_failure.csv")}
    (root / "nab" / "labels" / "combined_windows.json").write_text(json.dumps(windows))


def _skab(root: Path) -> None:
    header = ("datetime;Accelerometer1RMS;Accelerometer2RMS;Current;Pressure;Temperature;Thermocouple;Voltage;"
              "Volume Flow RateRMS;anomaly;changepoint")
    for folder in ("valve1", "other", "valve2"):
        (root / "skab" / "data" / folder).mkdir(parents=True)
        lines = [header]
        for i in range(200):
            leak = 150 <= i < 170
            flow = 76 + 0.3 * math.sin(i / 3) - (20 if leak else 0)
            lines.append(f"2020-03-01 15:{i // 60:02d}:{i % 60:02d};0.08;0.13;1.2;0.05;92;22;210;{flow:.3f};"
                         f"{1.0 if leak else 0.0};0.0")
        (root / "skab" / "data" / folder / "1.csv").write_text("\n".join(lines) + "\n")


def test_the_evaluation_command_reads_both_formats_and_reports_every_split(tmp_path: Path) -> None:
    _nab(tmp_path)
    _skab(tmp_path)
    out = tmp_path / "figures.json"
    result = subprocess.run([sys.executable, "-m", "midbrain", "evaluate", str(tmp_path), "--json", str(out)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    figures = json.loads(out.read_text())["figures"]
    assert set(figures) == {"nab/development", "nab/evaluation", "skab/development", "skab/evaluation"}
    assert figures["skab/evaluation"]["model"]["events"] == 2  # other/1.csv and valve2/1.csv
    for split in figures.values():
        assert split["model"]["events"] >= 1 and split["model"]["event_recall"] == 1.0  # the jumps and the leaks
        assert split["zscore_baseline"]["windows"] == split["model"]["windows"] > 0
    assert "nab/evaluation" in result.stdout and "zscore_ba" in result.stdout


def test_a_data_directory_without_the_data_sets_is_refused_with_the_reason(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "midbrain", "evaluate", str(tmp_path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "neither nab/ nor skab/" in result.stderr


def test_calibration_picks_a_threshold_on_the_development_files_within_the_budget(tmp_path: Path) -> None:
    _nab(tmp_path)
    _skab(tmp_path)
    out = tmp_path / "figures.json"
    result = subprocess.run([sys.executable, "-m", "midbrain", "evaluate", str(tmp_path), "--json", str(out),
                             "--calibrate-fpr", "0.02"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    calibrated = json.loads(out.read_text())["calibrated"]
    assert calibrated["false_positive_budget"] == 0.02 and set(calibrated["data_sets"]) == {"nab", "skab"}
    for dataset, c in calibrated["data_sets"].items():
        assert 0.0 <= c["threshold"] <= 1.0
        assert set(c["figures"]) == {f"{dataset}/development", f"{dataset}/evaluation"}
        assert c["figures"][f"{dataset}/development"]["model"]["false_positive_rate"] <= 0.02
    assert "threshold" in result.stdout and "of the development files' normal windows" in result.stdout
