"""Window features for the anomaly model, computed with numpy.

A window is the last ``window_s`` seconds of one scored metric of one device. The
features are scale-free (in units of the series' own noise), so one model serves every
device class. The training script imports this module, so training and serving compute
exactly the same numbers.
"""

import numpy as np

FEATURE_NAMES = ("z_last", "z_max", "range_rel", "slope_rel", "flat_frac", "jump_rel", "mad_rel")
N_FEATURES = len(FEATURE_NAMES)
MIN_POINTS = 8


def window_features(values: np.ndarray) -> np.ndarray:
    """Features of one window (values in time order, at least :data:`MIN_POINTS`)."""
    x = np.asarray(values, dtype=np.float64)
    n = x.size
    med = np.median(x)
    d = np.diff(x)
    # Noise from successive differences is robust to trends and to a few spikes.
    noise = 1.4826 * np.median(np.abs(d)) / np.sqrt(2.0)
    scale = max(noise, 1e-3 * (abs(med) + 1.0))
    dev = np.abs(x - med)
    idx = np.arange(n, dtype=np.float64)
    slope = np.polyfit(idx, x, 1)[0] if n >= 2 else 0.0
    mad = 1.4826 * np.median(dev)
    out = np.array([
        dev[-1] / scale,
        dev.max() / scale,
        (x.max() - x.min()) / scale,
        abs(slope) * n / scale,
        float(np.mean(np.abs(d) < 1e-9)),
        np.abs(d).max() / scale,
        mad / scale,
    ])
    # Compress the heavy tails; flat_frac is already a fraction.
    out[[0, 1, 2, 3, 5, 6]] = np.log1p(out[[0, 1, 2, 3, 5, 6]])
    return out.astype(np.float32)


def batch_features(windows: list[np.ndarray]) -> np.ndarray:
    """Stack the features of many windows into a (n, N_FEATURES) float32 matrix."""
    if not windows:
        return np.zeros((0, N_FEATURES), dtype=np.float32)
    return np.stack([window_features(w) for w in windows])


def zscore_last(values: np.ndarray) -> float:
    """The baseline detector the model must beat: |last - mean| / std of the window."""
    x = np.asarray(values, dtype=np.float64)
    sd = x[:-1].std()
    return float(abs(x[-1] - x[:-1].mean()) / sd) if sd > 0 else 0.0


# -- pattern detectors: several metrics of one device over a longer window -------------------

LEAK_FEATURE_NAMES = ("litres_per_h", "bins_with_use", "top_bin_share", "coverage", "log_points")
LEAK_BINS = 6
LEAK_MIN_POINTS = 3


def leak_features(ts: np.ndarray, total_m3: np.ndarray, window_s: float) -> np.ndarray:
    """Night-time use of one water meter from its cumulative register (every meter reports
    it, however sparsely): how much flowed, and whether it flowed all night long (a leak)
    or in a few draws. The window is split in LEAK_BINS equal bins; the register is
    interpolated at their edges."""
    t = np.asarray(ts, dtype=np.float64)
    v = np.asarray(total_m3, dtype=np.float64)
    span = max(t[-1] - t[0], 1.0)
    edges = np.linspace(t[0], t[-1], LEAK_BINS + 1)
    per_bin = np.diff(np.interp(edges, t, v)) * 1000.0  # litres
    used = max(v[-1] - v[0], 0.0) * 1000.0
    return np.array([
        np.log1p(used / (span / 3600.0)),
        float(np.mean(per_bin > 0.5)),
        float(per_bin.max() / used) if used > 0.5 else 1.0,
        min(1.0, span / window_s),
        np.log(len(t)),
    ], dtype=np.float32)


ELEVATOR_FEATURE_NAMES = ("running_frac", "running_still_frac", "longest_still_s", "door_changes_per_min",
                          "door_open_frac", "floor_changes_per_min", "door_open_running_frac")
ELEVATOR_MIN_POINTS = 8


def elevator_features(ts: np.ndarray, running: np.ndarray, floor: np.ndarray, door: np.ndarray) -> np.ndarray:
    """How a car moved over a window: running without changing floor (stuck between
    floors), doors that keep opening and closing (an obstructed or failing door)."""
    t = np.asarray(ts, dtype=np.float64)
    run = np.asarray(running) > 0.5
    fl = np.asarray(floor, dtype=np.float64)
    dr = np.asarray(door) > 0.5
    minutes = max(t[-1] - t[0], 1.0) / 60.0
    still = run[1:] & run[:-1] & (np.diff(fl) == 0)
    longest, current, prev_t = 0.0, 0.0, t[0]
    for ok, now in zip(still, t[1:], strict=True):
        current = current + (now - prev_t) if ok else 0.0
        longest = max(longest, current)
        prev_t = now
    return np.array([
        float(run.mean()),
        float(still.mean()) if still.size else 0.0,
        np.log1p(longest),
        np.count_nonzero(np.diff(dr.astype(np.int8))) / minutes,
        float(dr.mean()),
        np.count_nonzero(np.diff(fl)) / minutes,
        float((dr & run).mean()),
    ], dtype=np.float32)
