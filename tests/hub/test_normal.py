"""hub/normal.py: a device's learned normal, scored one reading at a time with the past only."""

import numpy as np
import pytest

from hub.normal import NormalError, NormalSettings, ZScoreBaseline, fit_normal, slow_channels

pytestmark = pytest.mark.unit

LEVELS_ONLY = NormalSettings(smooth=1, slow_lag=0, hold=0)


def _device(rows: int, seed: int = 0) -> np.ndarray:
    """Four channels: two that move together (a pump's current and flow), one noisy, one
    slowly warming (a temperature)."""
    rng = np.random.default_rng(seed)
    load = rng.normal(size=rows)
    return np.column_stack([
        10 + load + 0.1 * rng.normal(size=rows),
        30 + 2 * load + 0.2 * rng.normal(size=rows),
        rng.normal(size=rows),
        60 + np.cumsum(0.05 * rng.normal(size=rows)) + 0.01 * np.arange(rows),
    ])


def test_scores_of_a_prefix_are_the_prefix_of_the_scores() -> None:
    rows = _device(900)
    normal = fit_normal(rows[:400])
    scores = normal.stream(rows[:400]).score_all(rows[400:])
    flags = normal.stream(rows[:400]).flag_all(rows[400:])
    for cut in (1, 7, 150, 499):
        assert np.array_equal(normal.stream(rows[:400]).score_all(rows[400:400 + cut]), scores[:cut])
        assert np.array_equal(normal.stream(rows[:400]).flag_all(rows[400:400 + cut]), flags[:cut])


def test_a_reading_never_changes_the_scores_before_it() -> None:
    rows = _device(700)
    normal = fit_normal(rows[:400])
    before = normal.stream(rows[:400]).score_all(rows[400:])
    changed = rows.copy()
    changed[550:] += 1000.0  # a wild future
    after = normal.stream(rows[:400]).score_all(changed[400:])
    assert np.array_equal(before[:150], after[:150])
    assert after[150] < 1.0 < after[152]  # the median of the last 5 turns at the third wild reading


def test_fitting_is_deterministic() -> None:
    rows = _device(400, seed=3)
    a, b = fit_normal(rows), fit_normal(rows)
    assert a.t2_limit == b.t2_limit and a.q_limit == b.q_limit
    assert np.array_equal(a.model.components, b.model.components)


def test_a_reading_that_breaks_the_usual_correlation_is_flagged_though_each_channel_looks_usual() -> None:
    rows = _device(400)
    normal = fit_normal(rows, LEVELS_ONLY)
    mean, std = rows.mean(axis=0), rows.std(axis=0)
    odd = mean.copy()
    odd[0] += 1.5 * std[0]
    odd[1] -= 1.5 * std[1]  # current up, flow down: each within 2 sigma, together impossible
    assert normal.stream().score(odd) > 1.0
    assert ZScoreBaseline.fit(rows).score(odd) < 1.0
    usual = mean.copy()
    usual[0] += 1.5 * std[0]
    usual[1] += 1.5 * std[1]
    assert normal.stream().score(usual) < 1.0


def test_the_false_alarm_budget_sets_the_share_of_normal_readings_flagged() -> None:
    rng = np.random.default_rng(7)
    mixing = rng.normal(size=(5, 5))
    train, fresh = rng.normal(size=(2000, 5)) @ mixing, rng.normal(size=(20000, 5)) @ mixing
    for budget in (0.02, 0.1):
        normal = fit_normal(train, NormalSettings(false_alarm_budget=budget, smooth=1, slow_lag=0, hold=0))
        flagged = np.mean(normal.stream().score_all(fresh) > 1.0)
        assert budget * 0.6 < flagged < budget * 1.4


def test_slow_channels_are_the_wandering_ones() -> None:
    rows = _device(400)
    assert slow_channels(rows, 0.5).tolist() == [False, False, False, True]


def test_a_slow_channel_may_drift_but_a_step_in_a_fast_one_raises_an_alarm() -> None:
    rows = _device(1000)
    normal = fit_normal(rows[:400])
    assert normal.slow.tolist() == [False, False, False, True]
    later = rows[400:].copy()
    later[:, 3] += np.linspace(0, 3, 600)  # warming at its usual pace, to well past anything seen in training
    assert later[-100:, 3].min() > rows[:400, 3].max() + 5 * rows[:400, 3].std()
    assert np.mean(normal.stream(rows[:400]).flag_all(later)) < 0.1
    later[300:, 2] += 6.0
    flags = normal.stream(rows[:400]).flag_all(later)
    assert flags[310:].all()


def test_the_alarm_stays_raised_for_hold_readings_after_the_last_over_the_limit() -> None:
    rows = _device(600)
    settings = NormalSettings(smooth=1, slow_lag=0, hold=5, false_alarm_budget=0.0)
    normal = fit_normal(rows[:400], settings)
    later = np.tile(rows[:400].mean(axis=0), (200, 1))  # readings at the centre of normal
    later[100, 2] += 50.0
    flags = normal.stream(rows[:400]).flag_all(later)
    assert flags[100:106].all() and not flags[106:].any() and not flags[:100].any()


@pytest.mark.parametrize("rows", [np.ones((400, 3)), np.zeros((10, 3)), np.zeros(400)])
def test_rows_that_cannot_define_a_normal_are_refused(rows: np.ndarray) -> None:
    with pytest.raises(NormalError):
        fit_normal(rows)


def test_a_channel_constant_in_training_is_left_out() -> None:
    rows = _device(400)
    rows[:, 2] = 5.0
    normal = fit_normal(rows, LEVELS_ONLY)
    assert normal.model.channels.tolist() == [0, 1, 3]


@pytest.mark.parametrize(("refractory", "expected"), [(0, [100, 101, 200, 203]), (5, [100, 106, 200, 206])])
def test_a_changepoint_is_where_the_limit_is_crossed_and_none_follows_within_the_refractory_time(
        refractory: int, expected: list[int]) -> None:
    rows = _device(600)
    settings = NormalSettings(smooth=1, slow_lag=0, hold=60, false_alarm_budget=0.0, refractory=refractory)
    normal = fit_normal(rows[:400], settings)
    later = np.tile(rows[:400].mean(axis=0), (300, 1))  # readings at the centre of normal
    later[100, 2] += 50.0  # one reading over the limit
    later[200:203, 2] += 50.0  # three
    stream = normal.stream(rows[:400])
    assert np.flatnonzero(stream.changepoint_all(later)).tolist() == expected
    assert not stream.flag(later[0])  # the alarm latched at reading 202 ran out 60 readings later


def test_changepoints_of_a_prefix_are_the_prefix_of_the_changepoints() -> None:
    rows = _device(1000)
    rows[600:700, 2] += 4.0
    rows[800:, 0] -= 3.0
    normal = fit_normal(rows[:400], NormalSettings(false_alarm_budget=0.05))
    points = normal.stream(rows[:400]).changepoint_all(rows[400:])
    assert points[200:215].any() and points[300:315].any()  # the step up and its end, found within 15 readings
    for cut in (1, 150, 205, 299, 450):
        assert np.array_equal(normal.stream(rows[:400]).changepoint_all(rows[400:400 + cut]), points[:cut])
    wild = rows.copy()
    wild[750:] += 1000.0
    assert np.array_equal(normal.stream(rows[:400]).changepoint_all(wild[400:])[:350], points[:350])


ADAPTIVE = NormalSettings(refit_every=300, refit_window=400, accept_after=300)


def test_a_lasting_change_of_state_is_taken_as_the_new_normal_after_accept_after_readings() -> None:
    rows = _device(1600)
    later = rows[400:].copy()
    later[100:, 2] += 6.0  # a step that stays
    static = fit_normal(rows[:400]).stream(rows[:400]).flag_all(later)
    adaptive = fit_normal(rows[:400], ADAPTIVE).stream(rows[:400]).flag_all(later)
    assert static[105:].all()
    assert adaptive[105:399].all()  # raised for 300 readings: the step is an anomaly until then
    assert adaptive[420:].mean() < 0.05


def test_a_slow_drift_is_followed_by_refits_on_quiet_readings() -> None:
    rows = _device(3400)
    later = rows[400:].copy()
    later[:, 2] += np.linspace(0.0, 6.0, len(later))  # a fast channel wanders 6 sigma in 3000 readings
    static = fit_normal(rows[:400]).stream(rows[:400]).flag_all(later)
    adaptive = fit_normal(rows[:400], NormalSettings(refit_every=100, refit_window=400)).stream(
        rows[:400]).flag_all(later)
    assert static.mean() > 0.5
    assert adaptive.mean() < 0.05


def test_a_device_stuck_flat_cannot_become_the_new_normal() -> None:
    rows = _device(800)
    later = np.tile(rows[:400].mean(axis=0) + 20.0, (400, 1))  # every channel stuck, far away
    flags = fit_normal(rows[:400], ADAPTIVE).stream(rows[:400]).flag_all(later)
    assert flags[5:].all()  # no refit can learn a normal from readings that do not vary


def test_the_adaptive_normal_still_looks_only_back() -> None:
    rows = _device(1400)
    rows[700:, 2] += 6.0  # accepted as the new normal 300 readings on
    normal = fit_normal(rows[:400], ADAPTIVE)
    flags = normal.stream(rows[:400]).flag_all(rows[400:])
    for cut in (150, 301, 460, 999):
        assert np.array_equal(normal.stream(rows[:400]).flag_all(rows[400:400 + cut]), flags[:cut])
    wild = rows.copy()
    wild[1100:] -= 1000.0
    assert np.array_equal(normal.stream(rows[:400]).flag_all(wild[400:])[:700], flags[:700])


def test_adaptive_settings_are_checked() -> None:
    with pytest.raises(NormalError, match="refit_window"):
        NormalSettings(accept_after=100, refit_window=20)
    with pytest.raises(NormalError):
        NormalSettings(refit_every=-1)
    assert NormalSettings(blocks=200).refit_window == 400  # a window too short matters only when adapting
