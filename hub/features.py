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
