"""Optional InfluxDB sink: committed telemetry, also written to an InfluxDB v2 write API so
that Grafana users get their readings (``config/grafana/midbrain-telemetry.json``).

influxdb-client's batching WriteApi does the work: line protocol to ``/api/v2/write``,
gzip, batches by size and time, retries with exponential backoff and jitter, all on its
own thread. SQLite stays the record: a row reaches this sink only after it has been
committed there, so a sink that is down or refuses a batch costs Grafana a gap (counted
in ``midbrain_hub_influx_points_total{result="dropped"}`` and logged) and never costs the
hub a reading.

One point per reading: measurement = device class, tags = community, building,
device_class, device (and ``hist=true`` for readings replayed after an outage), fields =
the reading's metrics, time = the device's timestamp (ns).
"""

import logging
from collections.abc import Iterable
from typing import Any

from influxdb_client import InfluxDBClient, WritePrecision
from influxdb_client.client.write_api import WriteOptions
from prometheus_client import Counter

from hub.registry import Registry
from hub.settings import InfluxSettings
from hub.store import TelemetryRow
from servicekit.throttle import LogThrottle

log = logging.getLogger(__name__)

TAGS = ("community", "building", "device_class", "device", "hist")  # what a point can be selected by


class InfluxSink:
    def __init__(self, settings: InfluxSettings, registry: Registry, points: Counter) -> None:
        self.settings = settings
        self.registry = registry
        self._points = points  # labelled by result: queued, written, retried, dropped
        self._throttle = LogThrottle()
        self._client = InfluxDBClient(url=settings.url, token=settings.token.get_secret_value(), org=settings.org,
                                      enable_gzip=settings.gzip, timeout=settings.timeout_ms)
        options = WriteOptions(batch_size=settings.batch_size, flush_interval=settings.flush_interval_ms,
                               jitter_interval=0, retry_interval=settings.retry_interval_ms,
                               max_retries=settings.max_retries, max_retry_delay=settings.max_retry_delay_ms,
                               exponential_base=2, max_close_wait=settings.timeout_ms)
        self._write = self._client.write_api(write_options=options, success_callback=self._written,
                                             error_callback=self._dropped, retry_callback=self._retried)

    def add(self, rows: Iterable[TelemetryRow]) -> None:
        """Queue committed readings; the WriteApi's thread batches and sends them."""
        records = [r for r in map(self._record, rows) if r is not None]
        if records:
            self._write.write(bucket=self.settings.bucket, record=records, write_precision=WritePrecision.NS)
            self._points.labels("queued").inc(len(records))

    def close(self) -> None:
        """Send what is queued (waiting at most timeout_ms), then close."""
        self._write.close()
        self._client.close()

    def _record(self, row: TelemetryRow) -> dict[str, Any] | None:
        device = self.registry.devices.get(row.device)
        if device is None:
            return None
        tags = {"community": self.registry.community.id, "building": device.building,
                "device_class": str(device.device_class), "device": row.device}
        if row.hist:
            tags["hist"] = "true"
        return {"measurement": str(device.device_class), "tags": tags, "fields": dict(row.metrics),
                "time": round(row.ts * 1_000_000) * 1000}  # float seconds carry microseconds, not nanoseconds

    # Callbacks run on the WriteApi's thread: counters and logging only.

    def _written(self, conf: tuple[str, str, str], data: str | bytes) -> None:
        self._points.labels("written").inc(_lines(data))

    def _retried(self, conf: tuple[str, str, str], data: str | bytes, exc: Exception) -> None:
        self._points.labels("retried").inc(_lines(data))
        allowed, _ = self._throttle.allow("retry")
        if allowed:
            log.warning("influx sink %s: batch of %d points will be retried: %s", self.settings.url, _lines(data), exc)

    def _dropped(self, conf: tuple[str, str, str], data: str | bytes, exc: Exception) -> None:
        self._points.labels("dropped").inc(_lines(data))
        allowed, suppressed = self._throttle.allow("dropped")
        if allowed:
            log.error("influx sink %s: batch of %d points not written (SQLite keeps them): %s%s", self.settings.url,
                      _lines(data), exc, f" ({suppressed} more not logged)" if suppressed else "")


def _lines(data: str | bytes) -> int:
    text = data.decode() if isinstance(data, bytes) else data
    return text.count("\n") + 1 if text else 0
