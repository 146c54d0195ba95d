"""Pattern detectors: several metrics of one device over a longer window, each scored by
its own ONNX model (hub/models/water_leak, hub/models/elevator_fault).

Unlike the window model, which looks at one metric's last minute in units of its own
noise, these know what a device class does: a household meter that never stops at night
is leaking; a car that reports running but stays on one floor is stuck between floors.
Each model's manifest says which class and metrics it reads, its window, and whether it
only looks at night (the community's local night, ``night_hours``).
"""

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

from hub.features import ELEVATOR_FEATURE_NAMES, LEAK_FEATURE_NAMES, elevator_features, leak_features
from hub.inference import MODELS, ModelError, WindowModel
from hub.windows import WindowScore

Featurizer = Callable[[np.ndarray, np.ndarray, float], np.ndarray]  # times, (n, metrics) values, window_s


def _leak(ts: np.ndarray, values: np.ndarray, window_s: float) -> np.ndarray:
    return leak_features(ts, values[:, 0], window_s)


def _elevator(ts: np.ndarray, values: np.ndarray, window_s: float) -> np.ndarray:
    return elevator_features(ts, values[:, 0], values[:, 1], values[:, 2])


# model folder name -> (the features the hub computes for it, how)
FEATURIZERS: dict[str, tuple[tuple[str, ...], Featurizer]] = {
    "water_leak": (LEAK_FEATURE_NAMES, _leak),
    "elevator_fault": (ELEVATOR_FEATURE_NAMES, _elevator),
}


@dataclass(frozen=True, slots=True)
class NightHours:
    start_h: int
    end_h: int
    tz: ZoneInfo

    def contains(self, ts: float) -> bool:
        hour = datetime.fromtimestamp(ts, self.tz).hour
        if self.start_h <= self.end_h:
            return self.start_h <= hour < self.end_h
        return hour >= self.start_h or hour < self.end_h


class PatternDetector:
    """One model, the readings of every device of its class, scored in one batch a pass."""

    def __init__(self, model_dir: Path, night: NightHours, max_points: int = 2048, name: str | None = None) -> None:
        self.name = name or model_dir.name  # water_leak, elevator_fault: how its windows are read
        features, self._featurize = FEATURIZERS[self.name]
        self.model = WindowModel(model_dir, features)
        inputs = self.model.manifest["inputs"]
        self.device_class: str = inputs["device_class"]
        self.metrics: tuple[str, ...] = tuple(inputs["metrics"])
        self.window_s = float(inputs["window_s"])
        self.min_points = int(inputs["min_points"])
        self.night_only = bool(inputs.get("night_only", False))
        self.threshold = float(self.model.manifest.get("threshold", 0.8))
        self.night = night
        self._max_points = max_points
        self._series: dict[str, deque[tuple[float, tuple[float, ...]]]] = {}
        self._last: dict[str, dict[str, float]] = {}  # latest value of each metric: reports may carry a few

    def replaced_by(self, model_dir: Path) -> "PatternDetector":
        """This detector with another version of its model (the city's, say), keeping the
        readings gathered so far: a night of a meter's flow is not started again. ModelError
        if it does not load, or reads other metrics of another class."""
        new = PatternDetector(model_dir, self.night, self._max_points, self.name)
        if (new.device_class, new.metrics) != (self.device_class, self.metrics):
            raise ModelError(f"{self.name} model reads {'+'.join(new.metrics)} of {new.device_class}, the running "
                             f"one {self.label} of {self.device_class}")
        new._series, new._last = self._series, self._last
        return new

    @property
    def label(self) -> str:
        """The alert's metric column: what the pattern was read from."""
        return "+".join(self.metrics)

    def add(self, device: str, ts: float, metrics: dict[str, float]) -> None:
        last = self._last.setdefault(device, {})
        last.update((k, v) for k, v in metrics.items() if k in self.metrics)
        if len(last) < len(self.metrics):
            return  # not every metric seen yet
        if self.night_only and not self.night.contains(ts):
            return
        series = self._series.get(device)
        if series is None:
            series = self._series[device] = deque(maxlen=self._max_points)
        if series and ts <= series[-1][0]:
            return  # an older reading (replayed): the window is in time order
        series.append((ts, tuple(last[m] for m in self.metrics)))

    def score(self, now: float) -> list[WindowScore]:
        if self.night_only and not self.night.contains(now):
            return []
        horizon = now - self.window_s
        keys: list[str] = []
        rows: list[np.ndarray] = []
        for device, series in self._series.items():
            while series and series[0][0] < horizon:
                series.popleft()
            if len(series) < self.min_points:
                continue
            ts = np.fromiter((t for t, _ in series), dtype=np.float64, count=len(series))
            values = np.array([v for _, v in series], dtype=np.float64)
            keys.append(device)
            rows.append(self._featurize(ts, values, self.window_s))
        if not rows:
            return []
        scores = self.model.score(np.stack(rows))
        label = self.label
        return [WindowScore(device, label, now, float(s), kind, 0.0, 0.0, 0.0, len(self._series[device]))
                for device, s, kind in zip(keys, scores.anomalous, scores.kinds, strict=True)]


def load_detectors(names: tuple[str, ...], night: NightHours, models: Path = MODELS) -> dict[str, PatternDetector]:
    """The detectors by device class (one per class)."""
    detectors = [PatternDetector(models / name, night) for name in names]
    return {d.device_class: d for d in detectors}
