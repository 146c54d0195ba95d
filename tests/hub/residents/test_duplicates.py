"""The duplicate rule (pure) and its evaluation command on the dev set."""

from pathlib import Path

import pytest

from hub.residents.requests.duplicates import Report, is_duplicate, similarity
from hub.residents.requests import duplicates_eval

pytestmark = pytest.mark.unit

DEV = Path(__file__).parents[3] / "training" / "data" / "duplicates_dev.jsonl"
H = 3600.0


def test_similar_reports_at_one_place_within_the_window_are_duplicates() -> None:
    lamp = Report(0, "north-gate", "repair", "北门的路灯坏了，晚上一片黑")
    assert is_duplicate(Report(600, "north-gate", "repair", "北门路灯不亮了"), lamp, window_s=3 * H)
    assert not is_duplicate(Report(600, "east-gate", "repair", "路灯坏了"), lamp, window_s=3 * H)
    assert not is_duplicate(Report(600, "north-gate", "sanitation", "路灯坏了"), lamp, window_s=3 * H)
    assert not is_duplicate(Report(4 * H, "north-gate", "repair", "路灯坏了"), lamp, window_s=3 * H)
    assert not is_duplicate(Report(600, "north-gate", "repair", "北门道闸抬不起来"), lamp, window_s=3 * H)


def test_the_place_name_alone_does_not_make_two_problems_one() -> None:
    assert similarity("北门的垃圾亭很臭", "北门路灯不亮") == 0.0
    assert similarity("", "路灯") == 0.0


def test_the_evaluation_prints_its_figures(capsys: pytest.CaptureFixture[str]) -> None:
    assert duplicates_eval.main([str(DEV)]) == 0
    out = capsys.readouterr().out
    assert "pairwise precision" in out and "work orders" in out


def test_the_scores_count_pairs() -> None:
    rows = [{"group": g} for g in "aab"]
    assert duplicates_eval.score(rows, [0, 0, 1])["f1"] == 1.0  # type: ignore[arg-type]
    s = duplicates_eval.score(rows, [0, 0, 0])  # type: ignore[arg-type]
    assert (s["precision"], s["recall"], s["orders"], s["groups"]) == (1 / 3, 1.0, 1, 2)
