"""hub/evaluate_nab.py: what is ours (the results-file writer, the probationary period, the
detector's scores with no look-ahead), on made-up files. NAB's scorer itself runs from a
NAB checkout and is not needed here; docs/hub.md has the figures on the real files."""

import csv
from pathlib import Path

import numpy as np
import pytest

from hub.evaluate_nab import (DEVELOPMENT, SEASONAL_CHOSEN, NabError, NabFile, SeasonalNabSettings, anomaly_scores,
                              epoch_seconds, file_hits, labels_of, load, main,
                              onset_only, onset_only_for, probationary_rows, seasonal_profile, seasonal_scores,
                              shipped_detectors,
                              write_results)


def _series(n: int = 2000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    values = 50 + rng.normal(size=n)
    values[1500:1520] += 12  # a fault
    return values


def _stamps(n: int) -> list[str]:
    return [f"2014-01-{1 + i // 288:02d} {i % 288 // 12:02d}:{i % 12 * 5:02d}:00" for i in range(n)]


@pytest.mark.unit
def test_the_probationary_period_is_nabs_15_percent_capped_at_750_rows() -> None:
    assert probationary_rows(1000) == 150
    assert probationary_rows(1883) == 282  # rogue_agent_key_hold.csv: floor(0.15 · 1883)
    assert probationary_rows(22695) == 750  # machine_temperature: 0.15 · 5000 at most


@pytest.mark.unit
def test_scores_are_in_0_1_zero_over_the_probationary_rows_and_high_at_the_fault() -> None:
    values = _series()
    scores = anomaly_scores(values)
    assert scores.shape == values.shape
    assert np.all((scores >= 0) & (scores < 1))
    assert not scores[:probationary_rows(len(values))].any()
    assert scores[1500:1510].max() > 0.5  # over the detector's own limit
    assert np.mean(scores[400:1500] > 0.5) < 0.02


@pytest.mark.unit
def test_no_look_ahead_a_wild_future_changes_no_earlier_score() -> None:
    values = _series()
    wild = values.copy()
    wild[1200:] = 1e6
    a, b = anomaly_scores(values), anomaly_scores(wild)
    np.testing.assert_array_equal(a[:1200], b[:1200])


@pytest.mark.unit
def test_past_5000_rows_a_prefix_scores_as_the_prefix_of_the_scores() -> None:
    # NAB's probationary period (the training rows) is 750 rows for any file of 5000 or more,
    # so there the file's length changes nothing either.
    values = _series(6000, seed=1)
    np.testing.assert_array_equal(anomaly_scores(values[:5200]), anomaly_scores(values)[:5200])


def _times(n: int) -> np.ndarray:
    return epoch_seconds(_stamps(n))


@pytest.mark.unit
def test_nab_timestamps_are_read_as_utc_epoch_seconds() -> None:
    assert list(epoch_seconds(["2014-01-01 00:00:00", "2014-01-01 00:05:00"])) == [1388534400.0, 1388534700.0]
    with pytest.raises(NabError):
        epoch_seconds(["yesterday"])


@pytest.mark.unit
def test_seasonal_scores_are_in_0_1_zero_over_the_probationary_rows_and_high_at_the_fault() -> None:
    values = _series()
    scores = seasonal_scores(values, _times(len(values)))
    assert scores.shape == values.shape
    assert np.all((scores >= 0) & (scores < 1))
    assert not scores[:probationary_rows(len(values))].any()
    assert np.mean(scores[400:1500] > 0.5) < 0.02
    # Every reading scored (no onset rule): the whole fault is over the limit. With the
    # rule, a reading over the limit in the day before would have hidden it.
    every = seasonal_scores(values, _times(len(values)), SeasonalNabSettings(SEASONAL_CHOSEN.seasonal, 0.0))
    assert np.all(every[1500:1520] > 0.5)


@pytest.mark.unit
def test_seasonal_scores_do_not_look_ahead() -> None:
    values, times = _series(6000, seed=2), _times(6000)
    wild = values.copy()
    wild[3000:] = -1e6
    np.testing.assert_array_equal(seasonal_scores(values, times)[:3000], seasonal_scores(wild, times)[:3000])
    np.testing.assert_array_equal(seasonal_scores(values[:5200], times[:5200]), seasonal_scores(values, times)[:5200])


@pytest.mark.unit
def test_a_repeated_timestamp_scores_0() -> None:
    values, times = _series(), _times(2000)
    times[1000] = times[999]
    assert seasonal_scores(values, times)[1000] == 0.0


@pytest.mark.unit
def test_onset_only_for_holds_in_time_and_looks_only_back() -> None:
    d = np.array([0.2, 1.5, 3.0, 0.1, 0.3, 0.4, 2.0, 0.5])
    t = np.array([0.0, 1, 2, 3, 10, 11, 12, 13])
    np.testing.assert_array_equal(onset_only_for(d, t, 2.0), [0.2, 1.5, 0, 0, 0.3, 0.4, 2.0, 0])
    for end in range(1, len(d)):
        np.testing.assert_array_equal(onset_only_for(d[:end], t[:end], 2.0), onset_only_for(d, t, 2.0)[:end])


@pytest.mark.unit
def test_onset_only_keeps_the_first_reading_of_an_alarm_and_looks_only_back() -> None:
    d = np.array([0.2, 1.5, 3.0, 0.1, 0.3, 0.4, 2.0, 0.5])
    np.testing.assert_array_equal(onset_only(d, 2), [0.2, 1.5, 0, 0, 0, 0.4, 2.0, 0])
    for end in range(1, len(d)):
        np.testing.assert_array_equal(onset_only(d[:end], 2), onset_only(d, 2)[:end])


@pytest.mark.unit
def test_the_results_file_is_in_nabs_format(tmp_path: Path) -> None:
    n = 6
    file = NabFile("x.csv", tmp_path / "x.csv", _stamps(n), np.arange(n, dtype=float) + 0.25)
    labels = labels_of(file, [["2014-01-01 00:10:00.000000", "2014-01-01 00:20:00.000000"]])
    np.testing.assert_array_equal(labels, [0, 0, 1, 1, 1, 0])
    out = tmp_path / "results" / "hubNormal" / "realKnownCause" / "hubNormal_x.csv"
    write_results(out, file, np.linspace(0, 0.5, n), labels)
    with out.open() as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["timestamp", "value", "anomaly_score", "label"]
    assert [r["timestamp"] for r in rows] == file.timestamps  # unchanged, so NAB matches its labels
    assert [float(r["value"]) for r in rows] == list(file.values)
    assert [float(r["anomaly_score"]) for r in rows] == pytest.approx(np.linspace(0, 0.5, n))
    assert [r["label"] for r in rows] == ["0", "0", "1", "1", "1", "0"]


def _nab_data(root: Path) -> None:
    folder = root / "nab" / "data" / "realKnownCause"
    folder.mkdir(parents=True)
    for name in (DEVELOPMENT, "other.csv"):
        values = _series(1200)
        (folder / name).write_text("timestamp,value\n" + "".join(
            f"{t},{v:.4f}\n" for t, v in zip(_stamps(len(values)), values, strict=True)))


@pytest.mark.unit
def test_load_reads_the_realknowncause_files_in_name_order(tmp_path: Path) -> None:
    _nab_data(tmp_path)
    files = load(tmp_path / "nab")
    assert [f.name for f in files] == ["machine_temperature_system_failure.csv", "other.csv"]
    assert len(files[0].timestamps) == len(files[0].values) == 1200
    with pytest.raises(NabError):
        load(tmp_path / "missing")


@pytest.mark.unit
def test_a_folder_without_nabs_null_results_is_refused(tmp_path: Path) -> None:
    (tmp_path / "results" / "numenta" / "realKnownCause").mkdir(parents=True)
    with pytest.raises(NabError):
        shipped_detectors(tmp_path)
    (tmp_path / "results" / "null" / "realKnownCause").mkdir(parents=True)
    assert shipped_detectors(tmp_path) == ["null", "numenta"]


@pytest.mark.unit
def test_main_names_what_is_missing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path), "--nab-repo", str(tmp_path / "NAB")]) == 2
    assert "realKnownCause" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(tmp_path), "--nab-repo", str(tmp_path / "NAB"), "--grid", "everything"])


@pytest.mark.unit
def test_file_hits_counts_windows_found_and_detections_outside(tmp_path: Path) -> None:
    n = 400  # probationary rows: 60
    file = NabFile("x.csv", tmp_path / "x.csv", _stamps(n), np.zeros(n))
    windows = [[file.timestamps[100], file.timestamps[120]], [file.timestamps[300], file.timestamps[320]]]
    raw = np.full(n, 0.2)
    raw[[10, 110, 115, 200, 250]] = [0.9, 0.6, 0.8, 0.55, 0.4]  # row 10 is probationary: not counted
    scores = raw.copy()
    scores[115] = 0.0  # held by an onset rule
    hits = file_hits(file, scores, raw, windows, threshold=0.5)
    assert (hits.windows, hits.found, hits.outside) == (2, 1, 1)
    assert hits.over_limit == pytest.approx(3 / (n - 60))
    assert hits.peak_in_windows == pytest.approx(0.8 / 0.2)


@pytest.mark.unit
def test_seasonal_profile_names_the_period_chosen_on_the_probationary_rows(tmp_path: Path) -> None:
    n = 288 * 20  # 20 days of 5-minute rows: 750 probationary rows, 2.6 days
    hours = np.arange(n) / 12.0
    cycle = NabFile("x.csv", tmp_path / "x.csv", _stamps(n), 10 * np.sin(2 * np.pi * hours / 24)
                    + np.random.default_rng(5).normal(size=n))
    flat = NabFile("y.csv", tmp_path / "y.csv", _stamps(n), np.random.default_rng(6).normal(size=n))
    assert seasonal_profile(cycle) == "by hour of the day"
    assert seasonal_profile(flat) == "none"
