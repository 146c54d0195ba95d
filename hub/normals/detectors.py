"""The per-device normals as one hub component.

Ingest calls :meth:`NormalDetectors.add` with each live reading's good values: an append
to a bounded inbox, nothing more (when full, the newest reading is dropped and counted). A
reading within ``min_spacing_s`` of its device's last one taken (or older) is skipped and
counted: a burst costs the normals at most one reading per device per ``min_spacing_s``.
Each scoring pass calls :meth:`NormalDetectors.run_pass`: the readings since the last
pass, in arrival order, each scored by its device's stream with only the readings before
it, fits and refits done as they fall due (in a worker thread, off the event loop). The
rising edge of a device's alarm is one ``unusual`` alert; an alarm that stays raised
raises nothing more.
"""

import asyncio
import logging
from collections import deque
from dataclasses import dataclass
from typing import Any

from contract.classes import CATALOG
from hub.normals.device import DeviceNormal
from hub.normals.export import NormalStore
from hub.settings import NormalsSettings

__all__ = ["KIND", "NormalAlert", "NormalDetectors"]

log = logging.getLogger(__name__)

KIND = "unusual"


@dataclass(frozen=True, slots=True)
class NormalAlert:
    raised_at: float
    device: str
    score: float
    source: str  # the model's name@version
    metric: str  # the device's channels together, "temperature+humidity" (as the pattern detectors name theirs)
    kind: str = KIND
    severity: str = "warning"


class NormalDetectors:
    def __init__(self, settings: NormalsSettings, store: NormalStore) -> None:
        self.settings = settings
        self.store = store
        self.classes = frozenset(settings.classes)
        self.devices: dict[str, DeviceNormal] = {}
        self._inbox: deque[tuple[float, str, str, dict[str, float]]] = deque()
        self.dropped = 0  # readings the full inbox refused
        self.skipped = 0  # readings within min_spacing_s of their device's last one taken
        self.fit_failures = 0  # fits that raised (logged; the device tries again after refit_s)
        self._last_taken: dict[str, float] = {}  # by device: the time of the last reading taken

    def add(self, device: str, device_class: str, ts: float, values: dict[str, float]) -> None:
        """A live reading's good values (ingest's hot path: an append)."""
        if device_class not in self.classes:
            return
        last = self._last_taken.get(device)
        if last is not None and ts < last + self.settings.min_spacing_s:
            self.skipped += 1  # too soon after (or older than) the last reading taken
            return
        self._last_taken[device] = ts
        if len(self._inbox) >= self.settings.inbox_size:
            self.dropped += 1
            return
        self._inbox.append((ts, device, device_class, values))

    def take(self) -> list[tuple[float, str, str, dict[str, float]]]:
        taken = list(self._inbox)
        self._inbox.clear()
        return taken

    async def run_pass(self) -> list[NormalAlert]:
        """Score what arrived since the last pass (fits included) off the event loop."""
        batch = self.take()
        if not batch:
            return []
        return await asyncio.to_thread(self.process, batch)

    def process(self, batch: list[tuple[float, str, str, dict[str, float]]]) -> list[NormalAlert]:
        """Score each reading in order with only the past; the alarms that rose."""
        raised: list[NormalAlert] = []
        for ts, device, device_class, values in batch:
            normal = self.devices.get(device)
            if normal is None:
                channels = tuple(m.name for m in CATALOG[device_class].metrics)  # type: ignore[index]
                normal = self.devices[device] = DeviceNormal(device, channels, self.settings, self.store)
                if self.settings.restore:
                    normal.restore()
            row = normal.row(values)
            if row is None:
                continue
            rose, score = normal.observe(ts, row)
            if rose and score is not None:
                raised.append(NormalAlert(ts, device, score, normal.model_name, "+".join(normal.channels)))
            if normal.fit_due(ts):
                try:
                    normal.fit(ts)
                except Exception:  # a bug in one device's fit must not stop the others' scoring
                    log.exception("normal of %s: fit failed", device)
                    self.fit_failures += 1
                    normal.next_fit_at = ts + self.settings.refit_s
        return raised

    def status(self) -> list[dict[str, Any]]:
        """Per device: state, warm-up, budget and spent, last score, model version."""
        return [self.devices[d].status() for d in sorted(self.devices)]
