"""A single sensor's seasonal, adaptive normal, scored point by point.

For one series of readings with times (a thermometer, a meter, a request rate), at any
cadence, regular or not. Fit on the first readings of a device (its warm-up), then feed
it one reading at a time; each reading is scored with the readings before it only, and
the normal keeps learning afterwards, so what the hub computes live is what an
evaluation over a recorded file computes.

The normal, all state updated after a reading is scored:

- a seasonal profile: an offset per bin of the day (``bins_per_day``) or of the week, the
  period chosen at fit by how well a profile learned on the other cycles of the warm-up
  predicts each held-out cycle (none when no profile predicts at least
  ``min_seasonal_share`` of the variance, or when the warm-up spans fewer than two
  cycles); each bin keeps learning with a memory of ``season_cycles`` periods;
- slow levels of the deseasonalised reading (time constants ``level_hours``) and a fast
  one (``fast_readings`` readings), all in time, so gaps and irregular cadences weigh
  what they last.

Statistics, each in units of its own running spread (a mean absolute value):

- point: the reading against the fast level plus the profile: a jump, a spike, a change
  of rate that the recent readings do not explain;
- level, one per slow level: the short mean (``short_readings``) of the reading against
  that level plus the profile: an ordinary value at the wrong hour, a slow shift.

Learning is Huber-clipped: a residual beyond ``clip`` spreads is learned as ``clip``
spreads, so a fault does not teach the normal at once, and a lasting new level is still
absorbed in time. The distance of a reading is the larger statistic over its limit (over
1 means flagged). Each limit is set by a false-alarm budget shared among the statistics:
the (1 - budget/n) quantile of the statistic over the warm-up readings after the first
``prime_share`` of them (which only prime the state; n statistics), never below the
Gaussian figure for the same share.

Numpy only: the hub's runtime imports no training library.
"""

import math
from dataclasses import dataclass, field, replace
from statistics import NormalDist

import numpy as np

__all__ = ["SeasonalError", "SeasonalNormal", "SeasonalSettings", "SeasonalStream", "fit_seasonal",
           "held_out_share"]

DAY = 86_400.0
WEEK = 7 * DAY
_TINY = 1e-12
# A mean absolute value is √(2/π) of a Gaussian's standard deviation.
_MEAN_ABS = math.sqrt(2.0 / math.pi)


class SeasonalError(ValueError):
    """The readings cannot define a normal (too few, not finite, or time not increasing)."""


@dataclass(frozen=True, slots=True)
class SeasonalSettings:
    """How a single sensor's normal is learned and how far from it a reading may go.

    The defaults were chosen on NAB's development file alone (machine temperature): see
    hub/evaluate_nab.py and docs/hub.md for the search and the figures."""

    false_alarm_budget: float = 0.01  # share of calibration readings allowed over a limit
    bins_per_day: int = 24  # seasonal bins per day (a weekly profile has 7 times as many)
    min_seasonal_share: float = 0.2  # held-out variance a profile must explain to be used
    season_cycles: float = 4.0  # memory of each seasonal bin, in periods
    fast_readings: float = 3.0  # time constant of the fast level, in readings
    short_readings: float = 6.0  # time constant of the short mean of each level statistic
    level_hours: tuple[float, ...] = (24.0,)  # time constants of the slow levels, one statistic each
    spread_hours: float = 72.0  # time constant of each statistic's spread (at least its level's)
    clip: float = 4.0  # residuals beyond this many spreads are learned as this many
    prime_share: float = 0.3  # first share of the warm-up that only primes the state
    min_readings: int = 50


@dataclass(slots=True)
class _State:
    """Everything that changes as readings arrive; copied for each stream."""

    t_last: float
    fast: float
    levels: np.ndarray  # one per slow level
    shorts: np.ndarray  # short mean of the reading against each slow level
    profile: np.ndarray
    spread_point: float
    spread_dev: np.ndarray
    spread_level: np.ndarray

    def copy(self) -> "_State":
        return replace(self, levels=self.levels.copy(), shorts=self.shorts.copy(), profile=self.profile.copy(),
                       spread_dev=self.spread_dev.copy(), spread_level=self.spread_level.copy())


@dataclass(frozen=True, slots=True)
class SeasonalNormal:
    """A fitted normal: the constants, the limits and the state at the end of the warm-up
    (the warm-up readings are run through a stream once, so a stream starts where they end)."""

    settings: SeasonalSettings
    cadence: float  # median spacing of the warm-up readings, seconds
    period: float  # seconds; 0 when no seasonal profile is used
    bins: int
    limits: np.ndarray  # point, then one per slow level
    state: _State = field(repr=False)

    def stream(self) -> "SeasonalStream":
        """A scorer for the readings that follow the warm-up."""
        return SeasonalStream(self, self.state.copy())


class SeasonalStream:
    """Scores one reading at a time against a :class:`SeasonalNormal` and keeps learning.

    A reading whose value is not finite, or whose time is not after the last scored one
    (a duplicate, a clock set back), is skipped: not scored (``score`` returns nan), not
    learned, and counted in ``skipped``."""

    def __init__(self, normal: SeasonalNormal, state: _State) -> None:
        self._normal = normal
        self._s = state
        self.skipped = 0
        s = normal.settings
        k = len(s.level_hours)
        self.last_statistics = np.zeros(1 + k)  # point, then each level's, before limits
        self.last_residuals = np.zeros(1 + 2 * k)  # against the fast level; each slow level; their short means
        self._tau_fast = s.fast_readings * normal.cadence
        self._tau_short = s.short_readings * normal.cadence
        self._tau_levels = np.maximum(np.array(s.level_hours, dtype=np.float64) * 3600.0, 4 * self._tau_fast)
        self._tau_spreads = np.maximum(s.spread_hours * 3600.0, self._tau_levels)
        self._tau_point_spread = max(s.spread_hours * 3600.0, self._tau_fast)
        if normal.period:
            per_bin = max(normal.period / normal.bins / normal.cadence, 1.0)  # readings per bin per cycle
            self._season_rate = 1.0 - math.exp(-1.0 / (s.season_cycles * per_bin))
        else:
            self._season_rate = 0.0

    def score(self, value: float, t: float) -> float:
        """Distance of this reading (value at epoch seconds t) from normal: over 1 means
        flagged; nan for a skipped reading."""
        value, t = float(value), float(t)
        st = self._s
        if not (math.isfinite(value) and math.isfinite(t)) or t <= st.t_last:
            self.skipped += 1
            return math.nan
        dt = t - st.t_last
        clip = self._normal.settings.clip
        b = _bin(t, self._normal.period, self._normal.bins)
        season = st.profile[b]
        e_point = value - season - st.fast
        dev = value - season - st.levels
        shorts = st.shorts - np.expm1(-dt / self._tau_short) * (dev - st.shorts)
        statistics = np.concatenate(([abs(e_point) / st.spread_point], np.abs(shorts) / st.spread_level))
        self.last_statistics = statistics
        self.last_residuals = np.concatenate(([e_point], dev, shorts))
        distance = float(np.max(statistics / self._normal.limits))
        # Learn, each residual clipped at `clip` spreads.
        clip_point, clip_dev, clip_level = clip * st.spread_point, clip * st.spread_dev, clip * st.spread_level
        st.fast -= math.expm1(-dt / self._tau_fast) * min(max(e_point, -clip_point), clip_point)
        dev_c = np.clip(dev, -clip_dev, clip_dev)
        st.levels -= np.expm1(-dt / self._tau_levels) * dev_c
        if self._season_rate:
            st.profile[b] += self._season_rate * dev_c[0]  # the bin tracks the reading less the first slow level
        st.shorts = shorts
        spread = -np.expm1(-dt / self._tau_spreads)
        st.spread_point = max(st.spread_point - math.expm1(-dt / self._tau_point_spread)
                              * (min(abs(e_point), clip_point) - st.spread_point), _TINY)
        st.spread_dev = np.maximum(st.spread_dev + spread * (np.minimum(np.abs(dev), clip_dev) - st.spread_dev),
                                   _TINY)
        st.spread_level = np.maximum(
            st.spread_level + spread * (np.minimum(np.abs(shorts), clip_level) - st.spread_level), _TINY)
        st.t_last = t
        return distance

    def flag(self, value: float, t: float) -> bool:
        """Score this reading; True when it is over the limit (a skipped reading is not)."""
        return self.score(value, t) > 1.0

    def score_all(self, values: np.ndarray, times: np.ndarray) -> np.ndarray:
        """:meth:`score` for each reading in order (the same loop the hub would run)."""
        return np.array([self.score(v, t) for v, t in zip(values, times, strict=True)], dtype=np.float64)

    def flag_all(self, values: np.ndarray, times: np.ndarray) -> np.ndarray:
        """:meth:`flag` for each reading in order."""
        return np.array([self.flag(v, t) for v, t in zip(values, times, strict=True)], dtype=bool)


def _bin(t: float | np.ndarray, period: float, bins: int) -> int | np.ndarray:
    """Seasonal bin of a time (or of each); 0 without a profile."""
    if not period:
        return 0 if np.ndim(t) == 0 else np.zeros(np.shape(t), dtype=int)
    return (np.floor((np.asarray(t) % period) / period * bins).astype(int) % bins)[()]


def _check(values: np.ndarray, times: np.ndarray, settings: SeasonalSettings) -> tuple[np.ndarray, np.ndarray]:
    values, times = np.asarray(values, dtype=np.float64), np.asarray(times, dtype=np.float64)
    if values.ndim != 1 or values.shape != times.shape:
        raise SeasonalError(f"values and times must be 1-D and of one length, got {values.shape} and {times.shape}")
    if len(values) < settings.min_readings:
        raise SeasonalError(f"need at least {settings.min_readings} readings, got {len(values)}")
    bad = ~(np.isfinite(values) & np.isfinite(times))
    if bad.any():
        raise SeasonalError(f"{int(bad.sum())} readings are not finite (first at index {int(np.argmax(bad))})")
    if not 0.0 < settings.false_alarm_budget < 1.0:
        raise SeasonalError(f"false_alarm_budget must be in (0, 1), got {settings.false_alarm_budget}")
    return values, times


def _increasing(values: np.ndarray, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The readings whose time is after every earlier one (the ones a stream would score)."""
    keep = times > np.maximum.accumulate(np.concatenate(([-np.inf], times[:-1])))
    return values[keep], times[keep]


def _profile(values: np.ndarray, times: np.ndarray, period: float, bins: int) -> np.ndarray:
    """Mean of each bin (0 for a bin with no reading)."""
    idx = _bin(times, period, bins)
    sums = np.bincount(idx, weights=values, minlength=bins)
    counts = np.bincount(idx, minlength=bins)
    return np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)


def held_out_share(values: np.ndarray, times: np.ndarray, period: float, bins: int, cadence: float) -> float:
    """Share of the variance (around a linear trend) that a profile by bin of ``period``,
    learned on the other whole cycles, predicts in each held-out cycle; -inf for fewer
    than two whole cycles."""
    cycle = np.floor((times - times[0]) / period).astype(int)
    whole = cycle < int((times[-1] - times[0] + cadence) // period)
    if len(np.unique(cycle[whole])) < 2:
        return -math.inf
    x, t, c = values[whole], times[whole], cycle[whole]
    x = x - np.polyval(np.polyfit(t - t[0], x, 1), t - t[0])
    residual = 0.0
    for k in np.unique(c):
        mine = c == k
        residual += float(np.sum((x[mine] - _profile(x[~mine], t[~mine], period, bins)[
            _bin(t[mine], period, bins)]) ** 2))
    total = float(np.sum(x**2))
    return 1.0 - residual / total if total > 0 else -math.inf


def _gaussian_limit(budget: float, statistics: int) -> float:
    """|z| / mean |z| exceeded by a share ``budget / statistics`` of Gaussian readings."""
    return NormalDist().inv_cdf(1.0 - budget / statistics / 2.0) / _MEAN_ABS


def _run(normal: SeasonalNormal, values: np.ndarray,
         times: np.ndarray) -> tuple[SeasonalStream, np.ndarray, np.ndarray]:
    """A stream from ``normal``'s state over the readings: it, and each reading's
    statistics and residuals."""
    stream = normal.stream()
    statistics, residuals = [], []
    for v, t in zip(values, times, strict=True):
        stream.score(v, t)
        statistics.append(stream.last_statistics)
        residuals.append(stream.last_residuals)
    return stream, np.array(statistics), np.array(residuals)


def fit_seasonal(values: np.ndarray, times: np.ndarray,
                 settings: SeasonalSettings = SeasonalSettings()) -> SeasonalNormal:
    """Learn a sensor's normal from its warm-up readings (times in epoch seconds, readings assumed normal)."""
    values, times = _check(values, times, settings)
    values, times = _increasing(values, times)
    if len(values) < settings.min_readings:
        raise SeasonalError(f"need at least {settings.min_readings} readings with increasing times, got {len(values)}")
    cadence = float(np.median(np.diff(times)))
    period, bins, best = 0.0, 1, settings.min_seasonal_share
    for candidate in (DAY, WEEK):
        n = settings.bins_per_day * int(candidate // DAY)
        if cadence < candidate / 2:
            share = held_out_share(values, times, candidate, n, cadence)
            if share > best:
                period, bins, best = candidate, n, share
    profile = np.zeros(bins)
    if period:
        detrended = values - np.polyval(np.polyfit(times - times[0], values, 1), times - times[0])
        profile = _profile(detrended, times, period, bins)
    head = max(5, len(values) // 20)
    x0 = float(np.median(values[:head] - profile[_bin(times[:head], period, bins)]))
    step = float(np.mean(np.abs(np.diff(values)))) or _TINY
    spread = float(np.mean(np.abs(values - np.median(values)))) or _TINY
    k = len(settings.level_hours)
    unbounded = np.full(1 + k, np.inf)  # the statistics do not depend on the limits
    primed = int(settings.prime_share * len(values))

    def start(point: float, dev: np.ndarray, level: np.ndarray) -> SeasonalNormal:
        state = _State(t_last=times[0] - cadence, fast=x0, levels=np.full(k, x0), shorts=np.zeros(k),
                       profile=profile.copy(), spread_point=max(point, _TINY), spread_dev=np.maximum(dev, _TINY),
                       spread_level=np.maximum(level, _TINY))
        return SeasonalNormal(settings, cadence, period, bins, unbounded, state)

    # A first pass from rough spreads gives each residual's spread; a second pass from those
    # primes the state and gives the statistics the limits are set on.
    _, _, residuals = _run(start(step, np.full(k, spread), np.full(k, spread)), values, times)
    spreads = np.mean(np.abs(residuals[primed:]), axis=0)
    stream, statistics, _ = _run(start(spreads[0], spreads[1:1 + k], spreads[1 + k:]), values, times)
    quantile = 1.0 - settings.false_alarm_budget / (1 + k)
    limits = np.maximum(np.quantile(statistics[primed:], quantile, axis=0),
                        _gaussian_limit(settings.false_alarm_budget, 1 + k))
    return SeasonalNormal(settings, cadence, period, bins, limits, stream._s.copy())
