"""One fit of a device's normal: the budget made a per-reading share, hub.normal's fit,
the widening of an overspent device, and the held-out evaluation its manifest records."""

from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from hub.normal import NormalSettings, PcaNormal, fit_normal
from hub.normals.budget import WEEK_S, cadence_s, per_reading_budget

__all__ = ["Fit", "fit_device", "held_out_evaluation"]


@dataclass(frozen=True, slots=True)
class Fit:
    normal: PcaNormal  # numpy statistics, limits already widened
    settings: NormalSettings  # with the per-reading budget the fit used
    cadence_s: float
    budget_wanted: float  # the per-reading share before clamping
    widen: float
    evaluation: dict[str, Any]

    def describe(self) -> dict[str, Any]:
        """The manifest's fields of this fit (besides the file, channels and warm-up)."""
        return {"limits": {"t2": self.normal.t2_limit, "q": self.normal.q_limit, "widen": self.widen},
                "settings": {**asdict(self.settings), "cadence_s": self.cadence_s,
                             "budget_per_reading_wanted": self.budget_wanted},
                "used_channels": [int(c) for c in self.normal.model.channels],
                "slow_channels": [int(c) for c in np.flatnonzero(self.normal.slow)],
                "evaluation": self.evaluation}


def fit_device(rows: np.ndarray, timestamps: np.ndarray, *, alerts_per_week: float, smooth: int, hold: int,
               widen: float = 1.0) -> Fit:
    """Fit ``rows`` (time order) at the budget; NormalError if they cannot define a normal."""
    cadence = cadence_s(timestamps)
    share, wanted = per_reading_budget(alerts_per_week, cadence, smooth, len(rows))
    settings = NormalSettings(false_alarm_budget=share, smooth=smooth, hold=hold)
    normal = _widened(fit_normal(rows, settings), widen)
    return Fit(normal, settings, cadence, wanted, widen, held_out_evaluation(rows, settings, widen, cadence))


def _widened(normal: PcaNormal, widen: float) -> PcaNormal:
    return normal if widen == 1.0 else replace(normal, t2_limit=normal.t2_limit * widen,
                                               q_limit=normal.q_limit * widen)


def held_out_evaluation(rows: np.ndarray, settings: NormalSettings, widen: float, cadence: float) -> dict[str, Any]:
    """Alarms on the fit's own rows, each block scored as the hub would (a stream, one
    reading at a time) by a normal fitted on the other blocks: the share of readings
    flagged, the alerts (rising edges), and those alerts as a weekly rate."""
    bounds = np.linspace(0, len(rows), settings.blocks + 1).astype(int)
    flagged = alerts = scored = 0
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        rest = np.concatenate((rows[:lo], rows[hi:]))
        flags = _widened(fit_normal(rest, settings), widen).stream().flag_all(rows[lo:hi])
        flagged += int(flags.sum())
        alerts += int(flags[0]) + int(np.count_nonzero(flags[1:] & ~flags[:-1]))
        scored += hi - lo
    return {"method": f"held-out blocks ({settings.blocks}): each scored as a stream by a fit on the others",
            "readings": scored, "flagged_share": flagged / scored, "alerts": alerts,
            "alerts_per_week": alerts / (scored * cadence) * WEEK_S}
