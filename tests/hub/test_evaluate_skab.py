"""hub/evaluate_skab.py: SKAB's point-wise scorer and its protocol, on made-up files (the real
ones are read from ../shared/data, never copied: docs/hub.md has their figures)."""

from pathlib import Path

import numpy as np
import pytest

from hub.evaluate_skab import (CHANNELS, TRAIN_ROWS, Confusion, DataError, load, load_anomaly_free, long_normal, main,
                                pick_adaptive, run)
from hub.normal import NormalSettings


@pytest.mark.unit
def test_the_confusion_is_summed_over_files_then_scored_as_skab_defines_it() -> None:
    c = Confusion()
    c.add(np.array([1, 1, 0, 0], bool), np.array([1, 0, 1, 0], bool))
    c.add(np.array([1, 1, 1, 0, 0, 0], bool), np.array([1, 1, 1, 0, 0, 0], bool))
    assert (c.tp, c.fp, c.fn, c.tn) == (4, 1, 1, 4)
    # F1 = TP / (TP + (FN + FP) / 2), FAR = FP / (FP + TN) %, MAR = FN / (FN + TP) %, 2 decimals
    assert c.binary() == (0.8, 20.0, 20.0)
    odd = Confusion(tp=9589, tn=8094, fp=2936, fn=3182)  # SKAB's own T²+Q predictions, scored by us
    assert odd.binary() == (0.76, 26.62, 24.92)


def _skab(root: Path, files: int = 2) -> None:
    rng = np.random.default_rng(0)
    header = ";".join(("datetime",) + CHANNELS + ("anomaly", "changepoint"))
    for folder in ("valve1", "other"):
        (root / "skab" / "data" / folder).mkdir(parents=True)
        for n in range(files):
            lines = [header]
            for i in range(TRAIN_ROWS + 300):
                anomalous = 500 <= i < 600
                values = rng.normal(size=len(CHANNELS)) + 10
                values[-1] -= 8 if anomalous else 0  # the flow falls: a valve closes
                lines.append(f"2020-03-09 10:{i // 60 % 60:02d}:{i % 60:02d};" + ";".join(f"{v:.4f}" for v in values)
                             + f";{float(anomalous)};0.0")
            (root / "skab" / "data" / folder / f"{n}.csv").write_text("\n".join(lines) + "\n")
    (root / "skab" / "data" / "anomaly-free").mkdir(parents=True)
    lines = [";".join(("datetime",) + CHANNELS)] + [
        f"2020-02-08 13:{i // 60 % 60:02d}:{i % 60:02d};" + ";".join(f"{v:.4f}" for v in rng.normal(size=len(CHANNELS)) + 10)
        for i in range(TRAIN_ROWS + 600)]
    (root / "skab" / "data" / "anomaly-free" / "anomaly-free.csv").write_text("\n".join(lines) + "\n")


@pytest.mark.integration
def test_the_protocol_scores_the_test_rows_of_every_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _skab(tmp_path)
    files = load(tmp_path / "skab")
    assert [f.name for f in files] == ["other/0.csv", "other/1.csv", "valve1/0.csv", "valve1/1.csv"]
    out = run(files, NormalSettings())
    c = out["all"]["detector"]
    assert c.tp + c.fp + c.fn + c.tn == 4 * 300  # only the rows after the first 400
    assert c.tp + c.fn == 4 * 100
    assert c.binary()[2] < 5.0  # every valve closure found (false alarms: the 60-reading latch after each)
    assert main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "all 4 (leaderboard protocol)" in out and "Long normal running" in out
    free = long_normal(load_anomaly_free(tmp_path / "skab"), NormalSettings())
    assert free.fp + free.tn == 600 and free.tp + free.fn == 0  # every reading after the first 400, all normal


@pytest.mark.unit
def test_the_adaptive_stage_picks_the_best_f1_within_the_far_goal_then_the_fewest_normal_readings_flagged() -> None:
    a, b, c = NormalSettings(refit_every=100), NormalSettings(refit_every=200), NormalSettings(refit_every=300)
    results = [
        (a, Confusion(tp=80, fn=20, fp=5, tn=95), Confusion(fp=500, tn=500)),  # F1 0.84, FAR 5 %, half the long run
        (b, Confusion(tp=80, fn=20, fp=5, tn=95), Confusion(fp=100, tn=900)),  # the same F1 and FAR, 10 % of it
        (c, Confusion(tp=95, fn=5, fp=20, tn=80), Confusion(fp=0, tn=1000)),  # F1 0.88 but FAR 20 %: not allowed
    ]
    assert pick_adaptive(results) == b


@pytest.mark.integration
def test_a_folder_without_skab_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no CSV files"):
        load(tmp_path / "skab")
