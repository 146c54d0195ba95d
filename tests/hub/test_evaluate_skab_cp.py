"""hub/evaluate_skab_cp.py: the NAB scoring as SKAB applies it, on hand-made cases whose
answers are worked out by hand below, and the protocol on made-up files (the real ones
are read from ../shared/data, never copied: docs/hub.md has their figures)."""

import math
from pathlib import Path

import numpy as np
import pytest

from hub.evaluate_skab import CHANNELS, TRAIN_ROWS, DataError, load
from hub.evaluate_skab_cp import (PROFILES, Matched, detection_windows, edges, main, match, nab_scores, reward,
                                  run)
from hub.normal import NormalSettings

T0 = np.datetime64("2020-03-09T10:00:00", "s")


def _at(*seconds: int) -> np.ndarray:
    return T0 + np.array(seconds, dtype="timedelta64[s]")


@pytest.mark.unit
def test_each_window_is_60_s_right_of_its_changepoint_and_an_overlapping_one_starts_where_the_last_ends() -> None:
    times = _at(*range(300))
    truth = np.zeros(300, bool)
    truth[[10, 40, 200]] = True
    assert detection_windows(times, truth) == [(T0 + 10, T0 + 70), (T0 + 70, T0 + 100), (T0 + 200, T0 + 260)]


@pytest.mark.unit
def test_windows_are_in_time_not_rows() -> None:
    times = _at(0, 1, 2, 50, 100, 101)  # a gap in the log, as the rig's files have
    truth = np.array([0, 1, 0, 0, 0, 0], bool)
    (start, end), = detection_windows(times, truth)
    assert (start, end) == (T0 + 1, T0 + 61)
    assert match([(start, end)], times[[3, 4]]).false == 1  # 50 s in, 100 s out


@pytest.mark.unit
def test_first_detection_in_a_window_counts_later_ones_are_free_and_outside_ones_are_false() -> None:
    windows = [(T0 + 10, T0 + 70), (T0 + 70, T0 + 100), (T0 + 200, T0 + 260)]
    m = match(windows, _at(5, 10, 30, 70, 85, 150, 230, 290))
    # 5: before the first window, false. 10: window 1 at its start. 30: window 1 again,
    # ignored. 70: the shared boundary, inside both: window 2's first, at its start
    # (and not window 1's first). 85: window 2 again. 150: between windows 2 and 3,
    # false. 230: window 3 at (230 - 200) / 60 = 0.5. 290: after the last, false.
    assert m.positions == [0.0, 0.0, 0.5]
    assert (m.windows, m.missed, m.false) == (3, 0, 3)
    m = match(windows, _at(100))  # window 2's end, inclusive: its last point
    assert (m.positions, m.missed, m.false) == ([1.0], 2, 0)


@pytest.mark.unit
def test_a_file_without_changepoints_has_every_prediction_false() -> None:
    m = match([], _at(1, 2, 3))
    assert (m.windows, m.positions, m.missed, m.false) == (0, [], 0, 3)


@pytest.mark.unit
def test_the_reward_falls_from_a_tp_at_the_window_start_to_a_fp_at_its_end() -> None:
    standard = PROFILES[0]
    assert reward(0.0, standard) == pytest.approx(1.0)
    assert reward(1.0, standard) == pytest.approx(-0.11)  # point 999 of 1000, x = π/2
    # r = 0.5: point 500, x = −π/2 + π·500/999 = 0.0015724; y = 0.555·(1 − tanh x / tanh(π/2)) − 0.11
    x = -math.pi / 2 + math.pi * 500 / 999
    assert reward(0.5, standard) == pytest.approx(0.555 * (1 - math.tanh(x) / math.tanh(math.pi / 2)) - 0.11)
    assert reward(0.5, standard) == pytest.approx(0.44405, abs=1e-5)
    assert reward(0.9999, standard) == reward(1.0, standard)  # ⌊999.9⌋ = 999


@pytest.mark.unit
def test_scores_are_normalised_between_the_null_and_the_perfect_detector() -> None:
    # Two windows, one found at its start (+1), one missed (A_fn), one false positive (A_fp).
    m = Matched(windows=2, positions=[0.0], missed=1, false=1)
    # standard: S = 1 − 1 − 0.11 = −0.11; null −2, perfect 2: 100 · 1.89 / 4
    # LowFP: S = 1 − 1 − 0.22 = −0.22: 100 · 1.78 / 4; LowFN: S = 1 − 2 − 0.11 = −1.11, null −4: 100 · 2.89 / 6
    assert nab_scores(m) == {"standard": 47.25, "LowFP": 44.5, "LowFN": 48.17}
    assert nab_scores(Matched(windows=5, positions=[0.0] * 5)) == {"standard": 100.0, "LowFP": 100.0, "LowFN": 100.0}
    assert nab_scores(Matched(windows=5, missed=5)) == {"standard": 0.0, "LowFP": 0.0, "LowFN": 0.0}
    summed = Matched()
    summed.add(Matched(windows=1, positions=[0.0]))
    summed.add(Matched(windows=1, missed=1, false=1))
    assert nab_scores(summed) == nab_scores(m)  # files are summed before normalising


@pytest.mark.unit
def test_edges_use_only_the_flag_and_the_one_before() -> None:
    flags = np.array([1, 1, 0, 0, 1, 0], bool)
    assert np.flatnonzero(edges(flags)).tolist() == [0, 2, 4, 5]
    for cut in range(1, len(flags)):
        assert np.array_equal(edges(flags[:cut]), edges(flags)[:cut])


def _write_skab(root: Path) -> None:
    """Two made-up valve closures per folder: the flow falls at row 560 for 100 rows;
    the changepoint column marks where it falls and where it comes back."""
    rng = np.random.default_rng(1)
    header = ";".join(("datetime",) + CHANNELS + ("anomaly", "changepoint"))
    for folder in ("valve1", "other"):
        (root / "skab" / "data" / folder).mkdir(parents=True)
        for n in range(2):
            lines = [header]
            for i in range(TRAIN_ROWS + 400):
                anomalous = 560 <= i < 660
                values = rng.normal(size=len(CHANNELS)) + 10
                values[-1] -= 8 if anomalous else 0
                stamp = T0 + i + (i > 700) * 5  # a 6 s gap late in the file
                lines.append(f"{str(stamp).replace('T', ' ')};" + ";".join(f"{v:.4f}" for v in values)
                             + f";{float(anomalous)};{float(i in (560, 660))}")
            (root / "skab" / "data" / folder / f"{n}.csv").write_text("\n".join(lines) + "\n")


@pytest.mark.integration
def test_the_protocol_finds_the_made_up_closures_at_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write_skab(tmp_path)
    files = load(tmp_path / "skab")
    assert files[0].times[701] - files[0].times[700] == np.timedelta64(6, "s")
    m = run(files, NormalSettings(false_alarm_budget=0.05, refractory=30))["all"]["detector"]
    assert m.windows == 8 and m.missed == 0  # the flow's fall and its return, in each of 4 files
    assert max(m.positions) < 0.1  # each found within 6 s of its 60 s window
    assert nab_scores(m)["standard"] > 80
    assert main([str(tmp_path)]) == 0
    assert "| all 4 (leaderboard protocol) | hub.normal T²+Q changepoints |" in capsys.readouterr().out


@pytest.mark.integration
def test_timestamps_that_go_back_are_refused(tmp_path: Path) -> None:
    _write_skab(tmp_path)
    path = tmp_path / "skab" / "data" / "other" / "1.csv"
    lines = path.read_text().splitlines()
    lines[10], lines[11] = lines[11], lines[10]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match="other/1.csv: timestamps not strictly increasing"):
        load(tmp_path / "skab")
