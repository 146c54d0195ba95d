"""The triage scorer: figures worked out by hand on a small file, and a bad label named by line."""

import json

import pytest

from hub.residents.triage import Triage
from hub.residents.triage.evaluate import main, read_labelled, score

pytestmark = pytest.mark.unit


class Fixed:
    """A triager whose answers are given in advance, so the expected scores can be counted by hand."""

    name = "fixed"

    def __init__(self, answers: list[tuple[str, str]]) -> None:
        self.answers = answers

    def triage(self, texts):
        return [Triage(c, u, 1.0, ()) for c, u in self.answers[:len(texts)]]


def write(tmp_path, rows):
    path = tmp_path / "set.jsonl"
    path.write_text("\n".join(json.dumps({"text": t, "category": c, "urgency": u}, ensure_ascii=False)
                              for t, c, u in rows) + "\n", encoding="utf-8")
    return path


def test_scores_counted_by_hand(tmp_path):
    rows = read_labelled(write(tmp_path, [("a", "repair", "emergency"), ("b", "repair", "normal"),
                                          ("c", "safety", "emergency"), ("d", "other", "normal")]))
    s = score(Fixed([("repair", "emergency"), ("safety", "normal"), ("safety", "normal"),
                     ("other", "emergency")]), rows)
    assert s.per_category["repair"] == (1.0, 0.5, pytest.approx(2 / 3))
    assert s.per_category["safety"] == (0.5, 1.0, pytest.approx(2 / 3))
    assert s.per_category["other"] == (1.0, 1.0, 1.0)
    assert s.per_category["care"] == (0.0, 0.0, 0.0)  # absent everywhere: counts as 0 in the macro mean
    assert s.macro_f1 == pytest.approx((2 / 3 + 2 / 3 + 1) / 8)
    assert (s.emergency_recall, s.emergency_precision, s.emergencies, s.flagged) == (0.5, 0.5, 2, 2)


def test_a_label_outside_the_lists_names_its_line(tmp_path):
    path = write(tmp_path, [("a", "repair", "normal"), ("b", "plumbing", "normal")])
    with pytest.raises(ValueError, match=r"set.jsonl:2: category 'plumbing'"):
        read_labelled(path)


def test_command_prints_the_baseline(tmp_path, capsys):
    assert main([str(write(tmp_path, [("楼道灯坏了", "repair", "normal")]))]) == 0
    out = capsys.readouterr().out
    assert "1 messages" in out and "keywords: macro-F1" in out and "repair      P 1.00  R 1.00" in out
