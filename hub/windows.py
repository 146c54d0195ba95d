"""Sliding windows over scored metrics, their numpy aggregates and anomaly scores."""

from collections import deque
from dataclasses import dataclass

import numpy as np

from hub.features import MIN_POINTS, batch_features
from hub.inference import WindowModel


@dataclass(frozen=True, slots=True)
class WindowScore:
    device: str
    metric: str
    window_end: float
    score: float
    kind: str
    mean: float
    min: float
    max: float
    count: int


class Windows:
    """Keeps the last ``window_s`` seconds of each (device, metric) and scores them together."""

    def __init__(self, model: WindowModel, window_s: float, max_points: int = 4096) -> None:
        self._model = model
        self._window_s = window_s
        self._max_points = max_points
        self._series: dict[tuple[str, str], deque[tuple[float, float]]] = {}

    @property
    def model(self) -> WindowModel:
        return self._model

    def use(self, model: WindowModel) -> None:
        """Score with ``model`` from the next pass on. The windows stay: nothing is dropped,
        and a pass is scored by exactly one model (passes and swaps both run on the event loop)."""
        self._model = model

    def add(self, device: str, metric: str, ts: float, value: float) -> None:
        series = self._series.get((device, metric))
        if series is None:
            series = self._series[(device, metric)] = deque(maxlen=self._max_points)
        series.append((ts, value))

    def score(self, now: float) -> list[WindowScore]:
        """Score every series with enough points in ``[now - window_s, now]``, in one batch."""
        keys: list[tuple[str, str]] = []
        arrays: list[np.ndarray] = []
        horizon = now - self._window_s
        for key, series in self._series.items():
            while series and series[0][0] < horizon:
                series.popleft()
            if len(series) >= MIN_POINTS:
                keys.append(key)
                arrays.append(np.fromiter((v for _, v in series), dtype=np.float64, count=len(series)))
        if not arrays:
            return []
        scores = self._model.score(batch_features(arrays))
        return [
            WindowScore(device, metric, now, float(s), kind, float(a.mean()), float(a.min()), float(a.max()), a.size)
            for (device, metric), a, s, kind in zip(keys, arrays, scores.anomalous, scores.kinds, strict=True)
        ]
