"""Evaluate the hub's detectors on real sensor data: the Numenta Anomaly Benchmark
(realKnownCause) and the Skoltech Anomaly Benchmark (a water-circulation test bed).

``midbrain evaluate DATA_DIR`` (DATA_DIR holds ``nab/`` and ``skab/`` as described in
its README; nothing is copied into this repository). Every series is scored the way the
hub scores a metric: a window of the last ``window`` points, the hub's features, the
shipped model (anomalous when 1 - P(normal) reaches the manifest's threshold), beside
the z-score baseline (|last - mean| / std of the window > 3). A window is labelled
anomalous when its last point is. SKAB's channels are scored each on its own and a row
counts as flagged when any channel is, as the hub raises an alert on any metric.

Figures, per data set and split (the README names development and evaluation files):
point precision and recall, the false-positive rate on normal windows, and event
recall: the share of labelled anomalies (NAB windows, SKAB anomalous runs) that get at
least one detection.
"""

import csv
import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from hub.features import batch_features, zscore_last
from hub.inference import WindowModel

NAB_DEV = {"machine_temperature_system_failure.csv"}
SKAB_CHANNELS = ("Accelerometer1RMS", "Accelerometer2RMS", "Current", "Pressure", "Temperature", "Thermocouple",
                 "Voltage", "Volume Flow RateRMS")


class DataError(Exception):
    """The data directory is not what the README describes, with what is missing."""


@dataclass
class Tally:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0
    events: int = 0
    events_found: int = 0

    def add(self, flagged: np.ndarray, truth: np.ndarray, event_ids: np.ndarray) -> None:
        self.tp += int(np.sum(flagged & truth))
        self.fp += int(np.sum(flagged & ~truth))
        self.fn += int(np.sum(~flagged & truth))
        self.tn += int(np.sum(~flagged & ~truth))
        ids = set(event_ids[event_ids > 0].tolist())
        self.events += len(ids)
        self.events_found += len({int(e) for e in event_ids[flagged & (event_ids > 0)]})

    def figures(self) -> dict[str, float | int]:
        return {"precision": round(self.tp / max(1, self.tp + self.fp), 3),
                "recall": round(self.tp / max(1, self.tp + self.fn), 3),
                "false_positive_rate": round(self.fp / max(1, self.fp + self.tn), 4),
                "event_recall": round(self.events_found / max(1, self.events), 3),
                "events": self.events, "windows": self.tp + self.fp + self.fn + self.tn}


@dataclass
class Scored:
    """Every window of one file: the model's score, the baseline's z, the truth."""

    model: np.ndarray
    z: np.ndarray
    truth: np.ndarray
    event_ids: np.ndarray


@dataclass
class Result:
    files: dict[str, list[Scored]] = field(default_factory=dict)  # by "nab/evaluation" etc.

    def add(self, key: str, scored: Scored) -> None:
        self.files.setdefault(key, []).append(scored)

    def tally(self, key: str, threshold: float) -> tuple[Tally, Tally]:
        model, baseline = Tally(), Tally()
        for f in self.files[key]:
            model.add(f.model >= threshold, f.truth, f.event_ids)
            baseline.add(f.z > 3.0, f.truth, f.event_ids)
        return model, baseline

    def normal_scores(self, key: str) -> np.ndarray:
        return np.concatenate([f.model[~f.truth] for f in self.files[key]])

    def as_dict(self, threshold: float) -> dict[str, dict[str, dict[str, float | int]]]:
        out = {}
        for key in self.files:
            model, baseline = self.tally(key, threshold)
            out[key] = {"model": model.figures(), "zscore_baseline": baseline.figures()}
        return out


def _runs(truth: np.ndarray) -> np.ndarray:
    """Number each contiguous run of True 1, 2, ...; 0 elsewhere."""
    starts = truth & ~np.concatenate(([False], truth[:-1]))
    return np.where(truth, np.cumsum(starts), 0)


def _score(model: WindowModel, series: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """The model's score and the baseline's z for every window end index >= window - 1."""
    windows = [series[i - window + 1:i + 1] for i in range(window - 1, len(series))]
    if not windows:
        return np.zeros(0), np.zeros(0)
    scores = np.zeros(len(windows))
    for start in range(0, len(windows), 20_000):
        chunk = windows[start:start + 20_000]
        scores[start:start + len(chunk)] = model.score(batch_features(chunk)).anomalous
    return scores, np.array([zscore_last(w) for w in windows])


def evaluate_nab(root: Path, model: WindowModel, window: int, result: Result) -> list[str]:
    data, labels = root / "data" / "realKnownCause", root / "labels" / "combined_windows.json"
    if not data.is_dir() or not labels.is_file():
        raise DataError(f"{root}: expected data/realKnownCause/*.csv and labels/combined_windows.json")
    spans = json.loads(labels.read_text())
    files = sorted(data.glob("*.csv"))
    for path in files:
        with path.open() as fh:
            rows = list(csv.DictReader(fh))
        times = np.array([datetime.fromisoformat(r["timestamp"]).timestamp() for r in rows])
        values = np.array([float(r["value"]) for r in rows])
        event_ids = np.zeros(len(rows), int)
        for n, (start, end) in enumerate(spans.get(f"realKnownCause/{path.name}", []), start=1):
            lo, hi = datetime.fromisoformat(start).timestamp(), datetime.fromisoformat(end).timestamp()
            event_ids[(times >= lo) & (times <= hi)] = n
        scores, z = _score(model, values, window)
        ends = slice(window - 1, None)
        key = "nab/" + ("development" if path.name in NAB_DEV else "evaluation")
        result.add(key, Scored(scores, z, event_ids[ends] > 0, event_ids[ends]))
    return [p.name for p in files]


def evaluate_skab(root: Path, model: WindowModel, window: int, result: Result) -> list[str]:
    groups = {"development": [root / "data" / "valve1"], "evaluation": [root / "data" / "other", root / "data" / "valve2"]}
    files_done = []
    for split, folders in groups.items():
        files = sorted(p for folder in folders if folder.is_dir() for p in folder.glob("*.csv"))
        if not files:
            raise DataError(f"{root}: no CSV files in {', '.join(str(f) for f in folders)}")
        for path in files:
            with path.open() as fh:
                rows = list(csv.DictReader(fh, delimiter=";"))
            truth_all = np.array([float(r["anomaly"]) > 0 for r in rows])
            top_model = np.zeros(max(0, len(rows) - window + 1))
            top_z = np.zeros_like(top_model)
            for channel in SKAB_CHANNELS:  # a row is flagged when any channel is: its top score
                scores, z = _score(model, np.array([float(r[channel]) for r in rows]), window)
                top_model = np.maximum(top_model, scores)
                top_z = np.maximum(top_z, z)
            result.add(f"skab/{split}", Scored(top_model, top_z, truth_all[window - 1:], _runs(truth_all)[window - 1:]))
            files_done.append(f"{path.parent.name}/{path.name}")
    return files_done


def calibrate(result: Result, dataset: str, budget: float) -> float:
    """The lowest threshold at which the model flags at most ``budget`` of the normal
    windows of ``dataset``'s development files."""
    normal = np.sort(result.normal_scores(f"{dataset}/development"))
    if normal.size == 0:
        return 1.0
    allowed = int(np.floor(budget * normal.size))  # normal windows that may be flagged
    return float(np.nextafter(normal[normal.size - allowed - 1], np.inf)) if allowed < normal.size else 0.0


def evaluate(data_dir: Path, *, window: int = 60, model: WindowModel | None = None,
             calibrate_fpr: float | None = None) -> dict[str, object]:
    """Figures for every data set found under ``data_dir``; DataError if none is.

    With ``calibrate_fpr``, each data set also gets a threshold chosen on its development
    files alone (at most that share of their normal windows flagged), and the figures of
    every split at that threshold: what a deployment on such devices would set as
    ``hub.alert_threshold``."""
    model = model or WindowModel()
    threshold = float(model.manifest.get("threshold", 0.8))
    result = Result()
    files: dict[str, list[str]] = {}
    if (data_dir / "nab").is_dir():
        files["nab"] = evaluate_nab(data_dir / "nab", model, window, result)
    if (data_dir / "skab").is_dir():
        files["skab"] = evaluate_skab(data_dir / "skab", model, window, result)
    if not files:
        raise DataError(f"{data_dir}: neither nab/ nor skab/ is there (see the data README)")
    out: dict[str, object] = {"model": model.name, "window_points": window, "threshold": threshold,
                              "files": files, "figures": result.as_dict(threshold)}
    if calibrate_fpr is not None:
        calibrated = {}
        for dataset in files:
            t = calibrate(result, dataset, calibrate_fpr)
            calibrated[dataset] = {"threshold": round(t, 6), "figures": {
                key: figures for key, figures in result.as_dict(t).items() if key.startswith(dataset + "/")}}
        out["calibrated"] = {"false_positive_budget": calibrate_fpr, "data_sets": calibrated}
    return out
