"""Model reload: the operator's model folder, watched, and the models the city sends.

A new version of the configured folder is verified and built off the event loop, then
swapped into scoring between two passes; a version that fails its checks is refused, with
the reason, and the running model stays. A model the city sent stays in use until the
configured folder gets a new version. Every load and refusal is an event in :attr:`events`.
"""

import asyncio
import logging
import time
from pathlib import Path

from hub.inference import ModelError, WindowModel
from hub.metrics import HubMetrics
from hub.scoring import Scoring
from servicekit.lifecycle import wait_or_stop

log = logging.getLogger(__name__)


class ModelReload:
    def __init__(self, scoring: Scoring, model_dir: Path | None, metrics: HubMetrics) -> None:
        self.scoring = scoring
        self.model_dir = model_dir
        self.metrics = metrics
        self.events: list[dict[str, object]] = []  # loads and refusals, newest last
        # The version of the configured model folder last loaded.
        self._folder_sha = WindowModel.manifest_sha256(model_dir)

    async def run(self, stop: asyncio.Event, poll_s: float) -> None:
        while not await wait_or_stop(stop, poll_s):
            await self.reload()

    async def reload(self) -> dict[str, object]:
        """Load the model folder's current version if it is new."""
        model = self.scoring.model
        announced = WindowModel.manifest_sha256(self.model_dir)
        if announced is None or announced in (model.sha256, self._folder_sha):
            return {"loaded": False, "model": model.name}
        try:
            new = await asyncio.to_thread(WindowModel, self.model_dir)
        except ModelError as exc:
            if not self.events or self.events[-1].get("reason") != str(exc):  # once per bad version
                self.metrics.count("model_refused")
                log.error("new model refused, still scoring with %s: %s", model.name, exc)
                self.events.append({"at": time.time(), "event": "refused", "reason": str(exc)})
            return {"loaded": False, "model": model.name, "refused": str(exc)}
        previous = model.name
        self.scoring.use_model(new)
        self._folder_sha = new.sha256
        self.metrics.count("model_loads")
        self.events.append({"at": time.time(), "event": "loaded", "model": new.name, "sha256": new.sha256,
                            "previous": previous})
        log.warning("model %s replaced by %s (sha256 %s)", previous, new.name, new.sha256[:12])
        return {"loaded": True, "model": new.name, "previous": previous}

    def load_from_city(self, name: str, folder: Path) -> str:
        """Load the model the city sent as ``name`` from ``folder``; its name and version.

        ModelError if it does not load, its hash is not its manifest's, or (a pattern model)
        it reads other metrics than the detector it replaces."""
        if name == "window_anomaly":
            new = WindowModel(folder)
            previous = self.scoring.model.name
            self.scoring.use_model(new)
        else:
            detector = next((d for d in self.scoring.patterns.values() if d.name == name), None)
            if detector is None:
                raise ModelError(f"this hub does not run the {name} detector (hub.pattern_models)")
            replacement = detector.replaced_by(folder)
            new, previous = replacement.model, detector.model.name
            self.scoring.use_detector(replacement)
        self.metrics.count("model_loads")
        self.events.append({"at": time.time(), "event": "loaded", "model": new.name, "sha256": new.sha256,
                            "previous": previous, "from": "city"})
        log.warning("model %s replaced by %s from the city (sha256 %s)", previous, new.name, new.sha256[:12])
        return new.name
