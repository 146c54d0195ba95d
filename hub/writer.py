"""The ingest writer: every MQTT message to :class:`~hub.ingest.Ingestor`, and what it
collected committed to :class:`~hub.store.HubStore` in batches.

Manual acknowledgement: a message's PUBACK goes out only after the transaction that stores
it (or its dead letter) has committed, so a hub killed at any moment loses nothing the
broker accepted; the broker redelivers, and the store's unique index drops what was
committed but not acknowledged. No backpressure wait is needed either: the broker never
has more than its max_inflight_messages unacknowledged in our hands.

A batch is flushed every ``write_interval_s``, or sooner when ``ack_batch`` messages await
their PUBACK, ``queue_size`` rows are pending, or a threshold was crossed (an alert waits
for no timer). What the batch carries for other components (acks, crossings, city items,
rebirths, births) goes to ``after_commit`` before the PUBACKs.
"""

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import aiomqtt

from contract import topics
from contract.endpoints import MqttEndpoint
from hub.ingest import Ingestor, Pending
from hub.metrics import HubMetrics
from hub.store import HubStore
from servicekit.mqtt import MqttLink

if TYPE_CHECKING:
    from hub.influx import InfluxSink  # influxdb-client only where a sink is configured

AfterCommit = Callable[[Pending], Awaitable[None]]


class IngestWriter:
    def __init__(self, mqtt: MqttEndpoint, client_id: str, ingestor: Ingestor, store: HubStore,
                 metrics: HubMetrics, after_commit: AfterCommit, *, ack_batch: int, queue_size: int,
                 write_interval_s: float, influx: "InfluxSink | None" = None) -> None:
        self.ingestor = ingestor
        self.store = store
        self.metrics = metrics
        self.after_commit = after_commit
        self.ack_batch = ack_batch
        self.queue_size = queue_size
        self.write_interval_s = write_interval_s
        self.influx = influx
        self.link = MqttLink(mqtt, client_id=client_id, clean_session=False, manual_ack=True,
                             on_connect=self._subscribe, on_raw=self._on_raw)
        self._unacked: list[tuple[int, int, int]] = []  # (session, mid, qos) handled since the last flush
        self._flush_soon = asyncio.Event()

    @property
    def connected(self) -> bool:
        return self.link.connected

    async def _subscribe(self, client: aiomqtt.Client) -> None:
        await client.subscribe(topics.filter_everything(), qos=1)

    def _on_raw(self, topic: str, payload: bytes, mid: int, qos: int) -> None:
        """Every message, straight from the MQTT read loop."""
        self.ingestor.handle(topic, payload)
        self.metrics.totals["received_bytes"] += len(payload)  # what the egress share is measured against
        self._unacked.append((self.link.session, mid, qos))
        if (len(self._unacked) >= self.ack_batch or len(self.ingestor.pending) >= self.queue_size
                or self.ingestor.pending.crossings):  # an alert waits for no timer
            self._flush_soon.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Flush every write_interval_s, or sooner when asked (see the module docstring)."""
        stopped = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                soon = asyncio.create_task(self._flush_soon.wait())
                await asyncio.wait([stopped, soon], timeout=self.write_interval_s, return_when=asyncio.FIRST_COMPLETED)
                soon.cancel()
                self._flush_soon.clear()
                if not stop.is_set():
                    await self.flush()
        finally:
            stopped.cancel()

    async def flush(self) -> None:
        """Commit what ingest collected, hand on what it carries for others, then acknowledge it."""
        batch = self.ingestor.take()
        to_ack, self._unacked = self._unacked, []  # exactly the messages in this batch (no await between)
        self.metrics.count("stored", len(batch.telemetry))
        self.metrics.count("events_stored", len(batch.events))
        deltas = self.metrics.take_deltas()
        if batch.telemetry or batch.events or batch.dead or deltas or batch.births:
            # Counters are committed with the rows they count: the totals survive restarts
            # and always agree with what is stored.
            # On the event loop, not a worker thread: a batch is a few milliseconds of SQLite, and a
            # worker would wait for the GIL on every row while the MQTT reader keeps it busy
            # (measured: batches of 30,000 and stalls of seconds). Reading pauses meanwhile,
            # which is the backpressure we want.
            written = self.store.write(batch.telemetry, batch.events, batch.dead, deltas, batch.births)
            if written.corrections:
                self.metrics.committed(written.corrections)
                self.metrics.duplicates.inc(written.telemetry_repeats + written.event_repeats)
            self.metrics.stored.inc(written.telemetry)
            if self.influx is not None:  # committed first: the sink never has what SQLite lacks
                self.influx.add(batch.telemetry)
        for ack in batch.acks:
            await asyncio.to_thread(self.store.add_ack, *ack)
        await self.after_commit(batch)
        for session, mid, qos in to_ack:  # now safe: the broker may forget them
            self.link.ack(session, mid, qos)
        self.metrics.pending.set(len(self.ingestor.pending))
