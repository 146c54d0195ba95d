"""Scoring on its own: windows -> the model -> alert candidates, debounced, each window
recorded (and expired by retention), the candidates raised through alerting."""

import time
from pathlib import Path

import pytest

from contract.topology import Community
from hub.features import MIN_POINTS
from hub.inference import WindowModel
from hub.metrics import HubMetrics
from hub.registry import Registry
from hub.scoring import ScoreLog, Scoring
from tests.hub.components import alerting

pytestmark = pytest.mark.integration


def _scoring(tmp_path: Path, community: Community, threshold: float) -> Scoring:
    registry, metrics = Registry(community, offline_after_s=30), HubMetrics()
    scoring = Scoring(WindowModel(), registry, metrics, window_s=60, threshold=threshold, cooldown_s=300,
                      patterns={})
    scoring.connect(ScoreLog(tmp_path / "hub.sqlite3"), alerting(tmp_path, community, registry, metrics).raise_alert)
    return scoring


def _feed(scoring: Scoring, device: str, values: list[float]) -> None:
    now = time.time()
    for i, v in enumerate(values):
        scoring.windows.add(device, "temperature", now - len(values) + i, v)


async def test_every_window_is_recorded_and_candidates_are_raised_once(tmp_path: Path, community: Community) -> None:
    scoring = _scoring(tmp_path, community, threshold=0.0)  # every window a candidate
    _feed(scoring, "b1-th-01", [21.0 + 0.01 * i for i in range(MIN_POINTS + 5)])
    _feed(scoring, "b1-th-02", [22.0] * (MIN_POINTS + 5))
    assert await scoring.score_now() == 2
    assert await scoring.score_now() == 0  # the cooldown: one alert per incident, not per window
    assert scoring.score_log is not None
    rows = scoring.score_log.latest("b1-th-01", "temperature", 10)
    assert len(rows) == 2 and rows[0]["count"] == MIN_POINTS + 5 and rows[0]["mean"] > 21.0
    assert scoring.metrics.totals["alerts"] == 2 and scoring.metrics.windows._value.get() == 4
    assert scoring.score_log.expire(time.time() + 1) == 4


async def test_below_the_threshold_nothing_is_raised(tmp_path: Path, community: Community) -> None:
    scoring = _scoring(tmp_path, community, threshold=1.01)  # no score reaches it
    _feed(scoring, "b1-th-01", [21.0] * (MIN_POINTS + 5))
    assert await scoring.score_now() == 0
    assert scoring.score_log is not None and len(scoring.score_log.latest(None, None, 10)) == 1
    assert scoring.metrics.totals["alerts"] == 0


async def test_too_few_points_score_nothing(tmp_path: Path, community: Community) -> None:
    scoring = _scoring(tmp_path, community, threshold=0.0)
    _feed(scoring, "b1-th-01", [21.0] * (MIN_POINTS - 1))
    assert await scoring.score_now() == 0
    assert scoring.score_log is not None and scoring.score_log.latest(None, None, 10) == []
