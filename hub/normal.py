"""A device's learned normal: PCA T² and Q on its own channels, scored point by point.

Fit on the first rows of a device's history (its warm-up), then feed it one reading at
a time. Each reading is scored with the fitted model and the readings before it only,
so what the hub computes live is what an evaluation over a recorded file computes.

The statistics, for a reading x standardised with the training mean and spread:

- T², Hotelling's statistic in the principal subspace: sum over the kept components j
  of (p_j · x)² / λ_j, how unusual the reading is *within* the usual correlations;
- Q, the squared prediction error: |x - P Pᵀ x|², how far the reading leaves them.

Thresholds come from a false-alarm budget: the training rows are cut into contiguous
blocks, each block is scored by a model fitted on the others, and each limit is the
(1 - budget/2) quantile of those out-of-block statistics (half the budget to T², half to
Q). Scoring held-out blocks, not the rows the model was fitted on, keeps the limits from
being set too tight by in-sample fit, and blocks in time order let slow drift count.

A reading is flagged when the median of the last ``smooth`` values of T² / limit or of
Q / limit exceeds 1: isolated spikes are ignored, and the median only ever looks back.
An alarm then stays raised for ``hold`` readings after the last reading over a limit.
A changepoint (:meth:`NormalStream.changepoint`) is a reading at which the score crosses
the limit, up or down, more than ``refractory`` readings after the last changepoint.

Channels that wander slowly (temperatures: their successive changes are much smaller
than their spread) are scored by their change over ``slow_lag`` readings rather than by
their level: a few minutes of warm-up cannot show every level a temperature will reach,
but they do show how fast it usually moves.

The adaptive normal (off unless its settings are given) lives in the stream: it refits
on its recent readings when they were all quiet (slow drift), and takes an alarm that has
lasted ``accept_after`` readings as the device's new normal. A refit uses readings
already seen only, and :class:`NormalModel`'s math is the same for every fit.

Numpy only: the hub's runtime imports no training library.
"""

from collections import deque
from dataclasses import dataclass

import numpy as np

__all__ = ["NormalError", "NormalModel", "NormalSettings", "NormalStream", "PcaNormal", "ZScoreBaseline",
           "fit_normal", "slow_channels"]

_MIN_SPREAD = 1e-9  # a channel whose training spread is below this is left out (it carries no information)


class NormalError(ValueError):
    """The training rows cannot define a normal (too few rows or no varying channel)."""


@dataclass(frozen=True, slots=True)
class NormalSettings:
    """How a device's normal is learned and how far from it a reading may go.

    The defaults were chosen on SKAB's development files (valve1/) alone: see
    hub/evaluate_skab.py (outliers), hub/evaluate_skab_cp.py (``refractory``, for
    changepoints, where the search picked a budget of 0.05) and docs/hub.md."""

    explained_variance: float = 0.85  # components kept: the fewest that explain this share
    false_alarm_budget: float = 0.01  # share of held-out training readings allowed over a limit
    smooth: int = 5  # readings in the trailing median; 1 scores each reading on its own
    blocks: int = 5  # contiguous blocks of the training rows for the held-out scores
    slow_lag: int = 10  # > 0: a slow channel is scored by its change over this many readings
    hold: int = 60  # readings an alarm stays raised after the last one over a limit (an alarm latch)
    slow_limit: float = 0.5  # slow: successive changes spread less than this share of independent readings
    refractory: int = 30  # changepoints only: readings after one in which no other is reported
    # The adaptive normal (the stream refits itself; 0 turns each off, as the defaults do):
    refit_every: int = 0  # refit on the last `refit_window` readings at most this often, when none was alarmed
    refit_window: int = 400  # readings a refit learns from
    accept_after: int = 0  # an alarm raised this many readings in a row: the state is taken as the new normal

    def __post_init__(self) -> None:
        adaptive = self.refit_every or self.accept_after
        if min(self.refit_every, self.accept_after) < 0 or (adaptive and self.refit_window < 4 * self.blocks
                                                            + self.slow_lag):
            raise NormalError(f"refit_every and accept_after must be >= 0 and refit_window >= "
                              f"{4 * self.blocks + self.slow_lag}: {self}")


@dataclass(frozen=True, slots=True)
class NormalModel:
    """A fitted PCA on standardised channels; immutable, so one fit serves many streams."""

    channels: np.ndarray  # indices of the channels used (those that varied in training)
    mean: np.ndarray
    scale: np.ndarray
    components: np.ndarray  # channels x kept components
    variances: np.ndarray  # eigenvalue of each kept component

    def statistics(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """T² and Q of each row (rows x all channels); each row on its own."""
        z = (np.atleast_2d(rows)[:, self.channels] - self.mean) / self.scale
        scores = z @ self.components
        t2 = np.sum(scores**2 / self.variances, axis=1)
        residual = z - scores @ self.components.T
        return t2, np.sum(residual**2, axis=1)


def _fit_pca(rows: np.ndarray, explained_variance: float) -> NormalModel:
    spread = rows.std(axis=0, ddof=1)
    channels = np.flatnonzero(spread > _MIN_SPREAD * np.maximum(1.0, np.abs(rows.mean(axis=0))))
    if channels.size == 0:
        raise NormalError("no channel varies in the training rows")
    x = rows[:, channels]
    mean, scale = x.mean(axis=0), x.std(axis=0, ddof=1)
    z = (x - mean) / scale
    eigenvalues, eigenvectors = np.linalg.eigh(np.cov(z, rowvar=False).reshape(channels.size, channels.size))
    order = np.argsort(eigenvalues)[::-1]
    eigenvalues, eigenvectors = np.maximum(eigenvalues[order], 0.0), eigenvectors[:, order]
    share = np.cumsum(eigenvalues) / max(float(eigenvalues.sum()), 1e-300)
    kept = int(min(np.searchsorted(share, explained_variance) + 1, channels.size))
    # Fix each component's sign so that a fit is reproducible across LAPACK builds.
    signs = np.where(eigenvectors[np.abs(eigenvectors).argmax(axis=0), np.arange(channels.size)] < 0, -1.0, 1.0)
    eigenvectors = eigenvectors * signs
    return NormalModel(channels, mean, scale, eigenvectors[:, :kept],
                       np.maximum(eigenvalues[:kept], 1e-12))


def _held_out_statistics(rows: np.ndarray, settings: NormalSettings) -> tuple[np.ndarray, np.ndarray]:
    """T² and Q of each training row from a model fitted on the other blocks."""
    bounds = np.linspace(0, len(rows), settings.blocks + 1).astype(int)
    t2, q = np.empty(len(rows)), np.empty(len(rows))
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        rest = np.concatenate((rows[:lo], rows[hi:]))
        t2[lo:hi], q[lo:hi] = _fit_pca(rest, settings.explained_variance).statistics(rows[lo:hi])
    return t2, q


@dataclass(frozen=True, slots=True)
class PcaNormal:
    """A fitted model and its two limits: everything a stream needs to score readings."""

    model: NormalModel
    t2_limit: float
    q_limit: float
    smooth: int
    slow: np.ndarray  # channels scored by their change over `lag` readings, not their level
    lag: int
    hold: int
    refractory: int = 30
    settings: NormalSettings = NormalSettings()  # what it was fitted with: a stream refits with the same

    def stream(self, history: np.ndarray | None = None) -> "NormalStream":
        """A scorer for one device's readings, primed with the readings just before."""
        return NormalStream(self, history)


def slow_channels(rows: np.ndarray, limit: float) -> np.ndarray:
    """Channels that wander slowly (a temperature): the spread of their successive
    changes is below ``limit`` times what independent readings of their spread would
    give (√2 · spread). Their level on later days says little; their rate does."""
    spread = np.maximum(rows.std(axis=0), _MIN_SPREAD)
    return np.diff(rows, axis=0).std(axis=0) < limit * np.sqrt(2.0) * spread


def _rates(rows: np.ndarray, slow: np.ndarray, lag: int) -> np.ndarray:
    """Rows from index ``lag`` on, the slow channels replaced by their change over ``lag`` rows."""
    out = rows[lag:].copy()
    out[:, slow] -= rows[:-lag, slow] if lag else 0.0
    return out


def fit_normal(rows: np.ndarray, settings: NormalSettings = NormalSettings()) -> PcaNormal:
    """Learn the normal from ``rows`` (time order, rows x channels, readings assumed normal)."""
    rows = np.asarray(rows, dtype=np.float64)
    if rows.ndim != 2 or len(rows) < 4 * settings.blocks + settings.slow_lag:
        raise NormalError(f"need a 2-D array of at least {4 * settings.blocks + settings.slow_lag} rows, "
                          f"got shape {rows.shape}")
    slow = (slow_channels(rows, settings.slow_limit) if settings.slow_lag
                else np.zeros(rows.shape[1], dtype=bool))
    rows = _rates(rows, slow, settings.slow_lag)
    t2, q = _held_out_statistics(rows, settings)
    level = 1.0 - settings.false_alarm_budget / 2.0
    # A limit of 0 (a perfect held-out fit) would flag every later reading: floor it.
    t2_limit = max(float(np.quantile(t2, level)), 1e-9)
    q_limit = max(float(np.quantile(q, level)), 1e-9)
    return PcaNormal(_fit_pca(rows, settings.explained_variance), t2_limit, q_limit, settings.smooth,
                     slow, settings.slow_lag, settings.hold, settings.refractory, settings)


class NormalStream:
    """Scores one reading at a time against a :class:`PcaNormal`, looking only back."""

    def __init__(self, normal: PcaNormal, history: np.ndarray | None = None) -> None:
        self._normal = normal
        self._t2: deque[float] = deque(maxlen=normal.smooth)
        self._q: deque[float] = deque(maxlen=normal.smooth)
        self._past: deque[np.ndarray] = deque(maxlen=normal.lag)
        self._quiet = normal.hold + 1  # readings since the last one over a limit
        self._over = False  # changepoints: whether the device is taken to be over its limit
        self._since_change = normal.refractory  # changepoints: readings since the last one
        adaptive = normal.settings.refit_every or normal.settings.accept_after
        window = normal.settings.refit_window if adaptive else 0
        self._recent: deque[np.ndarray] = deque(maxlen=window)  # the adaptive normal's readings to refit on
        self._alarmed_run = 0  # readings in a row with the alarm raised
        self._quiet_run = window  # readings in a row without (the history is taken as normal)
        self._since_refit = 0
        if history is not None and len(history):
            history = np.atleast_2d(np.asarray(history, dtype=np.float64))
            self._prime(history)
            if window:
                self._recent.extend(history[-window:])

    def _prime(self, history: np.ndarray) -> None:
        """Score the last readings of ``history`` so that the first new one has its past."""
        for row in history[-(self._normal.smooth + self._normal.lag):]:
            self.score(row)

    def score(self, row: np.ndarray) -> float:
        """Distance of this reading from normal: above 1 means flagged."""
        row = np.asarray(row, dtype=np.float64)
        features = row
        if self._normal.lag:
            # Until `lag` readings have been seen, a slow channel's change is taken from the oldest.
            features = row.copy()
            if self._past:
                features[self._normal.slow] -= self._past[0][self._normal.slow]
            else:
                features[self._normal.slow] = 0.0
            self._past.append(row)
        t2, q = self._normal.model.statistics(features)
        self._t2.append(float(t2[0]) / self._normal.t2_limit)
        self._q.append(float(q[0]) / self._normal.q_limit)
        return max(float(np.median(self._t2)), float(np.median(self._q)))

    def flag(self, row: np.ndarray) -> bool:
        """Score this reading; True while an alarm is raised (score over 1, or within
        ``hold`` readings of the last reading that was)."""
        self._quiet = 0 if self.score(row) > 1.0 else self._quiet + 1
        raised = self._quiet <= self._normal.hold
        if self._recent.maxlen:
            self._adapt(np.asarray(row, dtype=np.float64), raised)
        return raised

    def _adapt(self, row: np.ndarray, raised: bool) -> None:
        """The adaptive normal, after each flag: refit on the recent readings when they
        were all quiet (slow drift), or when one alarm has lasted ``accept_after``
        readings (a lasting change of state becomes the new normal)."""
        settings = self._normal.settings
        self._recent.append(row)
        self._since_refit += 1
        self._alarmed_run = self._alarmed_run + 1 if raised else 0
        self._quiet_run = 0 if raised else self._quiet_run + 1
        full = len(self._recent) == self._recent.maxlen
        if settings.refit_every and self._since_refit >= settings.refit_every and full and self._quiet_run >= len(
                self._recent):
            rows = np.array(self._recent)
        elif settings.accept_after and self._alarmed_run >= settings.accept_after:
            rows = np.array(self._recent)[-settings.accept_after:]
        else:
            return
        self._since_refit = self._alarmed_run = 0
        try:
            normal = fit_normal(rows, settings)
        except NormalError:
            return  # the recent readings cannot define a normal (a channel went flat): keep the old one
        self._normal = normal
        self._t2.clear()
        self._q.clear()
        self._past.clear()
        self._quiet = normal.hold + 1
        self._prime(rows)

    def changepoint(self, row: np.ndarray) -> bool:
        """Flag this reading (the alarm goes on as with :meth:`flag`); True where the
        device's state changes: its score crosses the limit, up or down, and the last
        change is more than ``refractory`` readings back (a crossing within that time
        is ignored, so a score hovering at the limit does not report a flood)."""
        self.flag(row)
        over = self._quiet == 0
        self._since_change += 1
        if over == self._over or self._since_change <= self._normal.refractory:
            return False
        self._over, self._since_change = over, 0
        return True

    def changepoint_all(self, rows: np.ndarray) -> np.ndarray:
        """:meth:`changepoint` for each row in order."""
        return np.array([self.changepoint(row) for row in np.atleast_2d(rows)], dtype=bool)

    def score_all(self, rows: np.ndarray) -> np.ndarray:
        """:meth:`score` for each row in order (the same loop the hub would run)."""
        return np.array([self.score(row) for row in np.atleast_2d(rows)])

    def flag_all(self, rows: np.ndarray) -> np.ndarray:
        """:meth:`flag` for each row in order."""
        return np.array([self.flag(row) for row in np.atleast_2d(rows)], dtype=bool)


@dataclass(frozen=True, slots=True)
class ZScoreBaseline:
    """The simple reference: a reading is flagged when any channel is more than ``k``
    training standard deviations from its training mean."""

    mean: np.ndarray
    scale: np.ndarray
    k: float = 3.0

    @classmethod
    def fit(cls, rows: np.ndarray, k: float = 3.0) -> "ZScoreBaseline":
        rows = np.asarray(rows, dtype=np.float64)
        return cls(rows.mean(axis=0), np.maximum(rows.std(axis=0, ddof=1), _MIN_SPREAD), k)

    def score(self, row: np.ndarray) -> float:
        """Largest |z| over the channels, in units of ``k``: above 1 means flagged."""
        return float(np.max(np.abs((np.asarray(row, dtype=np.float64) - self.mean) / self.scale))) / self.k

    def score_all(self, rows: np.ndarray) -> np.ndarray:
        return np.array([self.score(row) for row in np.atleast_2d(rows)])
