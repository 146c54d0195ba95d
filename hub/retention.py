"""Retention: raw readings rolled up to 1-minute and 1-hour aggregates, then everything past
its retention deleted, by the component that owns it (the store's rows, scoring's windows);
residents' closed requests past theirs are anonymised by their own component.

Runs on the event loop, like the writer, in bounded steps (each roll-up step is at most
200,000 raw rows), every ``retention_interval_s``.
"""

import asyncio
import logging
import time
from collections.abc import Callable

from hub.scoring import ScoreLog
from hub.settings import HubSettings
from hub.store import HubStore
from servicekit.lifecycle import wait_or_stop

log = logging.getLogger(__name__)

DAY = 86400.0
RESOLUTIONS = (60, 3600)


class Retention:
    def __init__(self, store: HubStore, score_log: ScoreLog, settings: HubSettings,
                 anonymise: Callable[[float], int] | None = None) -> None:
        self.anonymise = anonymise  # residents' closed requests past their retention (hub.residents.requests)
        self.store = store
        self.score_log = score_log
        self.raw_days = settings.retention_raw_days
        self.minute_days = settings.retention_minute_days
        self.hour_days = settings.retention_hour_days
        self.dead_letter_days = settings.retention_dead_letter_days

    async def run(self, stop: asyncio.Event, interval_s: float) -> None:
        while not await wait_or_stop(stop, interval_s):
            await self.apply(time.time())

    async def apply(self, now: float) -> dict[str, int]:
        """Roll up, then expire; what each step did (rows or buckets), by name."""
        done = {f"rolled_up_{r}s": self.store.roll_up(r) for r in RESOLUTIONS}
        raw_before = now - self.raw_days * DAY
        done.update(self.store.expire(raw_before, {60: now - self.minute_days * DAY, 3600: now - self.hour_days * DAY},
                                      now - self.dead_letter_days * DAY))
        done["windows"] = self.score_log.expire(raw_before)
        if self.anonymise is not None:
            done["requests_anonymised"] = self.anonymise(now)
        if any(done.values()):
            log.info("retention: %s", ", ".join(f"{k} {v}" for k, v in done.items() if v))
        return done
