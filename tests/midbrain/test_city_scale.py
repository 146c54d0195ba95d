"""`midbrain simulate city-scale`: many bridges, each with its own outbox and key, against one city."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import DEMO_CONFIG

pytestmark = pytest.mark.real


def test_every_communitys_batches_reach_the_city_once_and_the_lag_is_reported(tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    result = subprocess.run([sys.executable, "-m", "midbrain", "simulate", "city-scale", "--communities", "20",
                             "--interval-s", "1", "--duration-s", "6", "--workdir", str(tmp_path / "w"),
                             "--report", str(report), "--config", str(DEMO_CONFIG)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(report.read_text())
    assert data["delivery_failures"] == 0 and data["communities"] == 20
    assert 20 * 5 <= data["batches"] <= 20 * 7
    assert data["city"]["summaries"] == data["batches"] == data["city"]["batches"]  # each summary once
    assert data["city"]["refused_batches"] == 0  # every community signed with its own key
    assert data["per_minute"] and all(m["p99_ms"] >= m["p50_ms"] > 0 for m in data["per_minute"])
    # The lag's parts, each measured: the community's outbox, and the HTTP exchange with the city.
    assert all(m["http_p99_ms"] > 0 and m["seal_p99_ms"] > 0 for m in data["per_minute"])
    assert "lag p99 ms" in result.stdout
