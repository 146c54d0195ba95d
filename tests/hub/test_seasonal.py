"""hub/seasonal.py: a single sensor's seasonal, adaptive normal, on made-up series."""

import math

import numpy as np
import pytest

from hub.seasonal import DAY, WEEK, SeasonalError, SeasonalSettings, fit_seasonal, held_out_share

HOUR = 3600.0
T0 = 1_388_534_400.0  # 2014-01-01 00:00 UTC, a Wednesday


def _daily(days: float, step: float = 900.0, amplitude: float = 10.0, noise: float = 0.5,
           seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A reading every ``step`` seconds: a daily cycle (low at 03:00, high at 15:00) plus noise."""
    rng = np.random.default_rng(seed)
    times = T0 + np.arange(0.0, days * DAY, step)
    values = 20.0 - amplitude * np.cos(2 * np.pi * ((times - T0) / DAY - 3 / 24)) + rng.normal(0, noise, len(times))
    return values, times


@pytest.mark.unit
def test_a_daily_cycle_is_learned_as_a_daily_profile() -> None:
    values, times = _daily(14)
    assert fit_seasonal(values, times).period == DAY
    assert held_out_share(values, times, DAY, 24, 900.0) > 0.9


@pytest.mark.unit
def test_white_noise_gets_no_profile() -> None:
    rng = np.random.default_rng(1)
    times = T0 + np.arange(0.0, 14 * DAY, 900.0)
    assert fit_seasonal(rng.normal(size=len(times)), times).period == 0.0


@pytest.mark.unit
def test_a_weekday_weekend_pattern_is_learned_as_a_weekly_profile() -> None:
    values, times = _daily(28)
    weekend = ((times - T0) // DAY + 2) % 7 >= 5  # T0 is a Wednesday: days 3 and 4 are Saturday and Sunday
    values[weekend] = 20.0 + np.random.default_rng(2).normal(0, 0.5, weekend.sum())  # flat at weekends
    normal = fit_seasonal(values, times)
    assert normal.period == WEEK and normal.bins == 7 * 24


@pytest.mark.unit
def test_an_ordinary_value_at_the_wrong_hour_is_flagged_and_at_the_right_hour_it_is_not() -> None:
    values, times = _daily(21)
    warm = 14 * 96  # 14 days of 15-minute readings
    normal = fit_seasonal(values[:warm], times[:warm])
    peak = 30.0  # the usual value at 15:00; at 03:00 the usual value is 10
    for at_hour, flagged in ((15, False), (3, True)):
        stream = normal.stream()
        i = warm + 96 + at_hour * 4  # a day after the warm-up, at that hour
        stream.score_all(values[warm:i], times[warm:i])
        assert stream.flag(peak, times[i]) is flagged, at_hour


@pytest.mark.unit
def test_a_reading_stuck_at_an_ordinary_value_is_flagged_once_the_hour_makes_it_wrong() -> None:
    # No jump: from 09:00 the reading stays at 20, the day's mean and its usual value at 09:00.
    values, times = _daily(16)
    warm = 14 * 96
    normal = fit_seasonal(values[:warm], times[:warm])
    stuck = values.copy()
    day = slice(warm + 96 + 9 * 4, warm + 96 + 21 * 4)  # 09:00 to 21:00 of the day after next
    stuck[day] = 20.0
    usual, odd = normal.stream(), normal.stream()
    assert not usual.flag_all(values[warm:day.stop], times[warm:day.stop])[day.start - warm:].any()
    assert odd.flag_all(stuck[warm:day.stop], times[warm:day.stop])[day.start - warm:].any()


@pytest.mark.unit
def test_noisy_normal_readings_stay_within_the_budget_and_a_fault_is_raised() -> None:
    budget = 0.01
    values, times = _daily(7 * 6, step=300.0, noise=1.0, seed=3)  # six weeks of 5-minute readings
    warm = 7 * 288
    normal = fit_seasonal(values[:warm], times[:warm], SeasonalSettings(false_alarm_budget=budget))
    stream = normal.stream()
    flags = np.array([stream.flag(v, t) for v, t in zip(values[warm:], times[warm:], strict=True)])
    assert flags.mean() <= budget, flags.mean()
    # A real fault: the reading stuck 8 noise units high for an hour.
    faulty = stream.score_all(values[-12:] + 8.0, times[-12:] + 12 * 300.0)
    assert np.nanmax(faulty) > 1.0


@pytest.mark.unit
def test_an_irregular_cadence_is_handled_in_time_not_in_readings() -> None:
    rng = np.random.default_rng(4)
    times = T0 + np.cumsum(rng.choice([60.0, 300.0, 3600.0], size=6000, p=[0.5, 0.45, 0.05]))
    values = rng.normal(size=len(times))
    normal = fit_seasonal(values[:1500], times[:1500])
    assert normal.cadence == 300.0 or normal.cadence == 60.0
    stream = normal.stream()
    assert np.mean(np.array([stream.flag(v, t) for v, t in zip(values[1500:], times[1500:], strict=True)])) < 0.03


@pytest.mark.unit
def test_no_look_ahead_a_wild_future_changes_no_earlier_score() -> None:
    values, times = _daily(10)
    warm = 3 * 96
    normal = fit_seasonal(values[:warm], times[:warm])
    wild = values.copy()
    wild[600:] = 1e6
    a = normal.stream().score_all(values[warm:], times[warm:])
    b = normal.stream().score_all(wild[warm:], times[warm:])
    np.testing.assert_array_equal(a[: 600 - warm], b[: 600 - warm])
    assert b[600 - warm] > 1.0


@pytest.mark.unit
def test_streams_of_one_normal_do_not_share_state() -> None:
    values, times = _daily(5)
    normal = fit_seasonal(values[:200], times[:200])
    first = normal.stream().score_all(values[200:], times[200:])
    spoiled = normal.stream()
    spoiled.score_all(values[200:] + 50.0, times[200:])
    np.testing.assert_array_equal(normal.stream().score_all(values[200:], times[200:]), first)


@pytest.mark.unit
def test_bad_training_readings_are_refused_with_the_reason() -> None:
    values, times = _daily(3)
    with pytest.raises(SeasonalError, match="not finite"):
        fit_seasonal(np.where(np.arange(len(values)) == 7, np.nan, values), times)
    with pytest.raises(SeasonalError, match="at least"):
        fit_seasonal(values[:10], times[:10])
    with pytest.raises(SeasonalError, match="one length"):
        fit_seasonal(values, times[:-1])
    with pytest.raises(SeasonalError, match="budget"):
        fit_seasonal(values, times, SeasonalSettings(false_alarm_budget=0.0))
    with pytest.raises(SeasonalError, match="increasing"):
        fit_seasonal(values[:100], np.full(100, T0))  # one time for every reading


@pytest.mark.unit
def test_a_clock_set_back_or_a_missing_value_is_skipped_and_counted() -> None:
    values, times = _daily(4)
    back = times.copy()
    back[150:162] -= 3300.0  # an hour repeated, as when a clock falls back
    normal = fit_seasonal(values[:200], back[:200])  # the repeated readings are left out of the fit
    stream = normal.stream()
    assert not math.isnan(stream.score(values[200], times[200]))
    assert math.isnan(stream.score(values[201], times[200]))  # the same time again
    assert math.isnan(stream.score(values[201], times[199]))  # earlier
    assert math.isnan(stream.score(float("nan"), times[201]))
    assert stream.flag(float("inf"), times[201]) is False
    assert stream.skipped == 4
    assert not math.isnan(stream.score(values[201], times[201]))  # and it goes on
