"""The interval summary: made at each aligned interval end (and a final one at shutdown),
kept in SQLite, published (QoS 1) when the broker takes it.

The first interval starts when the hub starts (not on the aligned boundary), so that a
restarted hub never produces a second summary for a window it already summarised. What
goes in comes from the components that saw it, through their interfaces: readings
(:meth:`Ingestor.take_interval`), alerts (:meth:`Alerting.take_interval`), dead letters
(:meth:`count_dead`), work orders (their ``counts``).
"""

import asyncio
import logging
import math
import time

import aiomqtt

from contract import topics
from contract.codec import decode_as, encode
from contract.downlink import ConfigChange
from contract.messages import HubSummary, WorkOrderStats
from hub.alerting import Alerting
from hub.ingest import Ingestor
from hub.metrics import HubMetrics
from hub.registry import Registry
from hub.summaries.build import build_summary
from hub.summaries.revisions import OrderCounts, Revisions
from hub.summaries.store import SummaryStore
from servicekit.lifecycle import wait_or_stop
from servicekit.mqtt import MqttLink, NotConnected

log = logging.getLogger(__name__)


class Summaries:
    def __init__(self, store: SummaryStore, registry: Registry, ingestor: Ingestor, alerting: Alerting,
                 order_counts: OrderCounts, metrics: HubMetrics, publisher: MqttLink, community: str, *,
                 interval_s: float, late_grace_s: float, revise_within_s: float,
                 rollups_s: tuple[int, ...] | list[int], publish_timeout_s: float) -> None:
        self.store = store
        self.registry = registry
        self.ingestor = ingestor
        self.alerting = alerting
        self.order_counts = order_counts
        self.metrics = metrics
        self.publisher = publisher
        self.community = community
        self.interval_s = interval_s  # the city may change it (apply_city_config)
        self.late_grace_s = late_grace_s
        self.revise_within_s = revise_within_s
        self.publish_timeout_s = publish_timeout_s
        self.revisions = Revisions(store, registry, ingestor, metrics, order_counts, rollups_s=rollups_s,
                                   revise_within_s=revise_within_s)
        self._dead = 0  # dead letters committed in this interval
        self._interval_start = time.time()
        self._mark_late(self._interval_start)
        # The summary task and the shutdown path both publish kept summaries: one at a time,
        # or the same summary could be published twice.
        self._publishing = asyncio.Lock()
        # Set when the hub stops: a broker that is down then is not waited for (the summaries
        # stay kept in SQLite and go out on the next start), so that a hub whose broker went
        # away with it still stops at once.
        self._stopping = asyncio.Event()

    def count_dead(self, n: int) -> None:
        """Dead letters committed (counted in this interval's summary)."""
        self._dead += n

    def apply_city_config(self, change: ConfigChange) -> None:
        """The city's configuration: the summary interval, from the next window."""
        if change.summary_interval_s is not None and change.summary_interval_s != self.interval_s:
            log.warning("summary interval set by the city: %.0f s (was %.0f s), from the next window",
                        change.summary_interval_s, self.interval_s)
            self.interval_s = change.summary_interval_s

    def _align(self, t: float) -> float:
        step = self.interval_s
        return math.floor(t / step) * step

    async def run(self, stop: asyncio.Event) -> None:
        await self.publish_kept()  # what an earlier run could not publish
        while True:
            next_end = self._align(self._interval_start) + self.interval_s
            if await wait_or_stop(stop, max(0.0, next_end - time.time())):
                return
            await self.close_interval(final=False)

    async def close_interval(self, *, final: bool) -> None:
        """Summarise the interval that ends now (``final``: at shutdown, cut short), keep it,
        revise what late readings touched, make the roll-ups due, publish what is kept."""
        if final:
            self._stopping.set()
        now = time.time()
        start = self._interval_start
        end = now if final else self._align(start) + self.interval_s
        orders = WorkOrderStats(**await self.order_counts(start, math.inf))
        readings, alerts = self.ingestor.take_interval(), self.alerting.take_interval()
        summary = build_summary(self.registry, start, end, readings.stats, readings.readings, alerts.by_kind,
                                readings.events, self._dead, alerts_by_severity=alerts.by_severity,
                                requests=readings.requests, work_orders=orders, household_alerts=alerts.household,
                                household_alerts_by_severity=alerts.household_by_severity, quality=readings.quality)
        self._dead = 0
        self._interval_start = end
        self._mark_late(end)
        # Kept in SQLite until the broker accepts it: a hub restarted while the broker is
        # unreachable still publishes every summary it produced.
        await asyncio.to_thread(self.store.keep_summary, summary.window_start, encode(summary), summary.window_end,
                                self.revise_within_s)
        await self.revisions.revise_late(self.interval_s)
        if not final:
            await self.revisions.roll_up(end, self.interval_s)
        await self.publish_kept()

    def _mark_late(self, interval_start: float) -> None:
        """From now on, readings older than the current window (by more than the grace) revise
        the summary of their own window."""
        self.ingestor.set_late_bounds(self.interval_s, interval_start - self.late_grace_s,
                                      time.time() - self.revise_within_s + self.interval_s)

    async def publish_kept(self) -> None:
        """Publish, oldest first, every summary the broker has not yet accepted."""
        async with self._publishing:
            await self._publish_kept()

    async def _publish_kept(self) -> None:
        for window_start, body in await asyncio.to_thread(self.store.unpublished_summaries):
            if not await self._publish(body, f"summary of window {window_start:.0f}"):
                return
            await asyncio.to_thread(self.store.summary_published, window_start)
            self.metrics.summaries.inc()
            self.metrics.count("summaries")
            if decode_as(HubSummary, body).revision:
                self.metrics.count("summary_revisions")  # published again under its key
        for period, window_start, body in await asyncio.to_thread(self.store.unpublished_rollups):
            if not await self._publish(body, f"roll-up of {period} s from {window_start:.0f}"):
                return
            await asyncio.to_thread(self.store.rollup_published, period, window_start, body)

    async def _publish(self, body: bytes, what: str) -> bool:
        """Publish a kept summary (QoS 1); False, counted and logged, if the broker did not take it."""
        try:
            if not await self._broker_up():
                raise NotConnected(f"broker not reachable{' at shutdown' if self._stopping.is_set() else ''}")
            await self.publisher.publish(topics.hub_summary(self.community), body, qos=1,
                                         timeout=self.publish_timeout_s)
        except (NotConnected, TimeoutError, aiomqtt.MqttError) as exc:
            self.metrics.count("summary_publish_failures")
            log.error("%s not published yet (kept for the next attempt): %s", what, exc or type(exc).__name__)
            return False
        return True

    async def _broker_up(self) -> bool:
        """Wait up to the publish timeout for the broker, but not once the hub is stopping."""
        if self.publisher.connected or self._stopping.is_set():
            return self.publisher.connected
        waits = {asyncio.ensure_future(self.publisher.wait_connected()), asyncio.ensure_future(self._stopping.wait())}
        _, pending = await asyncio.wait(waits, timeout=self.publish_timeout_s, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        return self.publisher.connected
