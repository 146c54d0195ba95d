"""One device's learned normal: its readings as rows, its warm-up, fits and refits, and
the stream that scores each reading with only the readings before it.

Rows: the device class's metrics in catalog order (a fixed channel order), one row per
reading. A metric a reading does not carry (or carries as bad) takes its last good value;
a reading before every channel has had a good value makes no row.

Memory: a ring buffer of the last ``buffer_readings`` rows, their times and whether they
were flagged, ``buffer_readings · (8·channels + 9)`` bytes (:attr:`DeviceNormal.nbytes`),
e.g. 10,080 readings of a 2-channel device: 252 KB. Refits read the unflagged rows in it.
"""

import logging
import time
from dataclasses import replace
from typing import Any

import numpy as np

from hub.inference import ModelError
from hub.normal import NormalError, NormalStream, PcaNormal
from hub.normals.budget import WEEK_S, Spent, cadence_s, per_reading_budget
from hub.normals.export import NormalStore, load_statistics
from hub.normals.fitting import Fit, fit_device
from hub.settings import NormalsSettings

__all__ = ["DeviceNormal"]

log = logging.getLogger(__name__)

_RETRY_S = 600.0  # a fit that failed (no varying channel, a disk error) is tried again after this


class DeviceNormal:
    """Warm-up, then an active stream; refits every ``refit_s`` of the device's own time."""

    def __init__(self, device: str, channels: tuple[str, ...], settings: NormalsSettings,
                 store: NormalStore) -> None:
        self.device = device
        self.channels = channels
        self.settings = settings
        self._store = store
        n, c = settings.buffer_readings, len(channels)
        self._rows = np.empty((n, c))
        self._ts = np.empty(n)
        self._flagged = np.zeros(n, dtype=bool)
        self._written = 0  # rows ever written; the newest is at (_written - 1) % n
        self._last = np.full(c, np.nan)
        self._index = {name: i for i, name in enumerate(channels)}
        self.first_ts: float | None = None
        self.next_fit_at = float("inf")  # refit time, device clock; warm-up decides the first
        self.stream: NormalStream | None = None
        self.normal: PcaNormal | None = None
        self.manifest: dict[str, Any] | None = None
        self.alarm = False
        self.last_score: float | None = None
        self.spent = Spent()
        self.widen = 1.0
        self.fits = 0
        self.last_error = ""

    @property
    def nbytes(self) -> int:
        return self._rows.nbytes + self._ts.nbytes + self._flagged.nbytes

    @property
    def active(self) -> bool:
        return self.stream is not None

    @property
    def model_name(self) -> str:
        return f"{self.manifest['name']}@{self.manifest['version']}" if self.manifest else ""

    def row(self, values: dict[str, float]) -> np.ndarray | None:
        """This reading's row (last good values for channels it lacks), None while incomplete."""
        for name, value in values.items():
            i = self._index.get(name)
            if i is not None:
                self._last[i] = value
        return None if np.isnan(self._last).any() else self._last.copy()

    def observe(self, ts: float, row: np.ndarray) -> tuple[bool, float | None]:
        """Score the row (when active), keep it; (alarm rose on this reading, score)."""
        rose, score = False, None
        if self.stream is not None:
            flagged = self.stream.flag(row)
            score = self.last_score = self.stream.last_score
            rose, self.alarm = flagged and not self.alarm, flagged
            if rose:
                self.spent.add(ts)
        self._keep(ts, row, self.alarm)
        if self.first_ts is None:
            self.first_ts = ts
        return rose, score

    def _keep(self, ts: float, row: np.ndarray, flagged: bool) -> None:
        i = self._written % len(self._ts)
        self._rows[i], self._ts[i], self._flagged[i] = row, ts, flagged
        self._written += 1

    def _order(self) -> slice | np.ndarray:
        """Indices of the buffered readings, oldest first."""
        n = len(self._ts)
        if self._written <= n:
            return slice(0, self._written)
        start = self._written % n
        return np.r_[start:n, 0:start]

    def _recent(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The buffered rows, times and flags, oldest first."""
        order = self._order()
        return self._rows[order], self._ts[order], self._flagged[order]

    def fit_due(self, ts: float) -> bool:
        if self.stream is None and self.next_fit_at == float("inf"):
            s = self.settings
            return (self._written >= s.warmup_readings and self.first_ts is not None
                    and ts - self.first_ts >= s.warmup_min_s)
        # A normal restored after a restart refits only once it has a warm-up's rows again.
        return ts >= self.next_fit_at and self._written >= self.settings.warmup_readings

    def restore(self) -> bool:
        """Score with the newest version exported for this device (a hub restarted), verified
        by hash like any load; False, and warm-up from scratch, if there is none or it is refused."""
        folder = self._store.latest(self.device)
        if folder is None:
            return False
        try:
            statistics, manifest = load_statistics(folder)
            if tuple(manifest["inputs"]["channels"]) != self.channels:
                raise ModelError(f"{folder}: channels {manifest['inputs']['channels']} are not {list(self.channels)}")
            settings, limits = manifest["settings"], manifest["limits"]
            slow = np.zeros(len(self.channels), dtype=bool)
            slow[list(manifest["slow_channels"])] = True
            normal = PcaNormal(statistics, float(limits["t2"]), float(limits["q"]),  # type: ignore[arg-type]
                               int(settings["smooth"]), slow, int(settings["slow_lag"]), int(settings["hold"]))
            refit_at = float(manifest["warmup"]["to"]) + self.settings.refit_s
            widen = float(limits["widen"])
        except (ModelError, KeyError, TypeError, ValueError, IndexError) as exc:
            self.last_error = f"not restored: {exc}"
            log.warning("normal of %s: %s not restored, warming up again: %s", self.device, folder.name, exc)
            return False
        self.normal, self.stream, self.manifest = normal, _Stream(normal), manifest
        self.widen, self.next_fit_at = widen, refit_at
        log.info("normal of %s: restored %s", self.device, self.model_name)
        return True

    def fit(self, ts: float) -> bool:
        """Fit (or refit) on the unflagged buffered rows, export, load the export back
        verified, and score through it from the next reading on; False if it failed (the
        previous model, if any, stays)."""
        buffered, times, flagged = self._recent()
        rows, times = buffered[~flagged], times[~flagged]
        spent, budget = self.spent.in_week(ts), self.settings.alerts_per_week
        if self.stream is not None and spent > budget:
            self.widen *= spent / budget
            log.warning("normal of %s: %d alerts in the trailing week over its budget of %g: limits widened "
                        "x%.3g (now x%.3g of the fit's)", self.device, spent, budget, spent / budget, self.widen)
        try:
            fit = fit_device(rows, times, alerts_per_week=budget, smooth=self.settings.smooth,
                             hold=self.settings.hold, widen=self.widen)
            normal = self._export_and_load(fit, times)
        except (NormalError, ModelError, ValueError, OSError) as exc:
            self.last_error = str(exc)
            self.next_fit_at = ts + min(_RETRY_S, self.settings.refit_s)
            log.warning("normal of %s: fit on %d rows failed, next try at %s: %s", self.device, len(rows),
                        _iso(self.next_fit_at), exc)
            return False
        history = buffered[-(normal.smooth + normal.lag):]
        self.normal, self.stream = normal, _Stream(normal, history)
        self.alarm, self.last_error = False, ""
        self.fits += 1
        self.next_fit_at = ts + self.settings.refit_s
        log.info("normal of %s: %s fitted on %d rows (T² limit %.4g, Q limit %.4g, held-out %.2f alerts/week)",
                 self.device, self.model_name, len(rows), normal.t2_limit, normal.q_limit,
                 fit.evaluation["alerts_per_week"])
        return True

    def _export_and_load(self, fit: Fit, times: np.ndarray) -> PcaNormal:
        seq = self._store.next_sequence(self.device)
        manifest = {
            "inputs": {"channels": list(self.channels)},
            "outputs": {"t2": "Hotelling's T² per row", "q": "squared prediction error per row"},
            **fit.describe(),
            "budget": {"alerts_per_week": self.settings.alerts_per_week,
                       "spent_in_trailing_week": self.spent.in_week(float(times[-1]))},
            "warmup": {"rows": int(len(times)), "from": float(times[0]), "to": float(times[-1]),
                       "from_iso": _iso(times[0]), "to_iso": _iso(times[-1])},
            "libraries": _libraries(),
        }
        exported = self._store.export(self.device, seq, fit.normal.model, len(self.channels), manifest)
        statistics, self.manifest = load_statistics(exported.folder)  # verified by hash, as at any load
        return replace(fit.normal, model=statistics)  # type: ignore[arg-type]  # duck-typed statistics()

    def status(self, now: float | None = None) -> dict[str, Any]:
        s = self.settings
        latest = float(self._ts[(self._written - 1) % len(self._ts)]) if self._written else None
        at = latest if latest is not None else (now or time.time())
        per_reading = None
        if self.manifest is not None:
            per_reading = self.manifest["settings"]["false_alarm_budget"]
        elif self._written > 1:
            times = self._ts[self._order()]  # the times only: a status read copies no rows
            try:
                per_reading = per_reading_budget(s.alerts_per_week, cadence_s(times), s.smooth,
                                                 max(len(times), s.warmup_readings))[0]
            except ValueError:
                per_reading = None
        return {
            "device": self.device, "channels": list(self.channels),
            "state": "active" if self.active else "warming_up",
            "warmup": {"readings": min(self._written, s.warmup_readings), "of": s.warmup_readings,
                       "min_s": s.warmup_min_s,
                       "since": self.first_ts, "elapsed_s": (at - self.first_ts) if self.first_ts else 0.0},
            "refit_at": self.next_fit_at if self.active else None,
            "budget": {"alerts_per_week": s.alerts_per_week, "per_reading": per_reading},
            "spent": self.spent.in_week(at), "widen": self.widen, "alarm": self.alarm,
            "last_score": self.last_score, "model": self.model_name or None,
            "model_version": self.manifest["version"] if self.manifest else None,
            "sha256": self.manifest["sha256"] if self.manifest else None,
            "fits": self.fits, "last_error": self.last_error or None, "buffer_bytes": self.nbytes,
            "latest_reading": latest, "week_s": WEEK_S,
        }


class _Stream(NormalStream):
    """hub.normal's stream, remembering the score behind its last flag (for the staff page)."""

    last_score: float | None = None

    def score(self, row: np.ndarray) -> float:
        self.last_score = super().score(row)
        return self.last_score


def _libraries() -> dict[str, str]:
    import onnx
    import onnxruntime

    return {"numpy": np.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(float(ts)))
