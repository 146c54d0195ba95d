"""Late revisions and roll-ups of the interval summaries kept in :class:`SummaryStore`.

Late readings (an edge's replay after an outage) make a new revision of the summary of
the window they belong to (same key at the bridge and the city, the next revision
number), and of each roll-up made already that holds that window. A roll-up window is
made at its end, or when a hub that was down comes back, from the interval summaries
kept for it.
"""

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

from contract.codec import decode_as, encode
from contract.messages import HubSummary, WorkOrderStats
from hub.ingest import Ingestor
from hub.metrics import HubMetrics
from hub.registry import Registry
from hub.settings import is_multiple
from hub.summaries.build import late_summary, revise, roll_up
from hub.summaries.store import SummaryStore

log = logging.getLogger(__name__)

# (since, until): the work-order counts over a window (WorkOrders.counts)
OrderCounts = Callable[[float, float], Awaitable[dict[str, Any]]]


class Revisions:
    def __init__(self, store: SummaryStore, registry: Registry, ingestor: Ingestor, metrics: HubMetrics,
                 order_counts: OrderCounts, *, rollups_s: tuple[int, ...] | list[int], revise_within_s: float) -> None:
        self.store = store
        self.registry = registry
        self.ingestor = ingestor
        self.metrics = metrics
        self.order_counts = order_counts
        self.rollups_s = rollups_s
        self.revise_within_s = revise_within_s
        self._rollups_warned = False

    async def revise_late(self, step: float) -> None:
        """Late readings gathered in the interval just closed: a new revision of each window
        they belong to."""
        touched: set[tuple[int, float]] = set()  # roll-up windows holding a revised window
        for window, stats, readings, quality in self.ingestor.take_late():
            late = late_summary(self.registry, window, window + step, stats, readings, quality)
            body = await asyncio.to_thread(self.store.kept_summary, window, window + step)
            kept = decode_as(HubSummary, body) if body is not None else None
            revised = revise(kept, late)
            await asyncio.to_thread(self.store.keep_summary, revised.window_start, encode(revised),
                                    revised.window_end, self.revise_within_s)
            self.metrics.count("summaries_revised" if kept is not None else "summaries_from_late_data")
            log.info("summary of window %.0f revised with %d late readings (revision %d)", revised.window_start,
                     sum(readings.values()), revised.revision)
            touched.update((p, math.floor(revised.window_start / p) * p) for p in self.periods(step))
        # Each roll-up made already that holds a revised window: revised once, however many of
        # its windows a replay revised.
        for period, start in sorted(touched):
            body = await asyncio.to_thread(self.store.kept_rollup, period, start)
            if body is not None:
                await self._make_rollup(period, start, decode_as(HubSummary, body))

    def periods(self, step: float) -> list[int]:
        """The roll-ups to make: those that are whole multiples of the interval (the city may
        have changed the interval since the configuration was checked)."""
        periods = [p for p in self.rollups_s if is_multiple(p, step) and p > step]
        if len(periods) != len(self.rollups_s) and not self._rollups_warned:
            self._rollups_warned = True
            log.warning("summary roll-ups %s are not whole multiples of the summary interval (%g s) and are not "
                        "made", sorted(set(self.rollups_s) - set(periods)), step)
        return periods

    async def roll_up(self, upto: float, step: float) -> None:
        """Make every roll-up window that has ended by ``upto`` (within revise_within_s) and
        has interval summaries kept but no roll-up yet."""
        for period in self.periods(step):
            due = await asyncio.to_thread(self.store.rollups_due, period, upto, time.time() - self.revise_within_s)
            for start in due:
                await self._make_rollup(period, start, None)

    async def _make_rollup(self, period: int, start: float, kept: HubSummary | None) -> None:
        """The roll-up of [start, start + period) from the interval summaries kept for it: the
        first, or (``kept``) the next revision of one made before, whose work-order counts stay."""
        end = start + period
        parts = [decode_as(HubSummary, b) for b in await asyncio.to_thread(self.store.kept_summaries_in, start, end)]
        if not parts:
            return
        orders = kept.work_orders if kept is not None else parts[-1].work_orders
        if kept is None and orders is not None:
            # Opened and resolved over the whole window (medians do not add up); overdue as
            # the last interval saw it, at the window's end.
            counts = await self.order_counts(start, end)
            orders = WorkOrderStats(**{**counts, "overdue": orders.overdue})
        rollup = roll_up(parts, start, end, period, orders, revision=kept.revision + 1 if kept is not None else 0)
        await asyncio.to_thread(self.store.keep_rollup, period, start, end, encode(rollup), self.revise_within_s)
        self.metrics.count("summary_rollups" if kept is None else "summary_rollup_revisions")
        log.info("roll-up of %d s from %.0f made from %d summaries (revision %d)", period, start, len(parts),
                 rollup.revision)
