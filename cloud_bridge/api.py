"""The bridge's health and metrics endpoints: the outbox as an operator sees it."""

from collections.abc import Iterator
from typing import Any, Protocol

from fastapi import FastAPI, Query
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from cloud_bridge.downlink import DownlinkState
from cloud_bridge.outbox import Outbox
from servicekit.mqtt import MqttLink


class BridgeView(Protocol):
    """What the endpoints read of the running bridge (:class:`cloud_bridge.service.Bridge`),
    named here so that the service imports its API and not the other way round."""

    key: bytes
    link: MqttLink
    outbox: Outbox
    downlink_state: DownlinkState

    def stats(self) -> dict[str, Any]: ...


class _OutboxCollector(Collector):
    """Read at scrape time from the outbox itself, so the figures survive restarts."""

    def __init__(self, bridge: BridgeView) -> None:
        self._bridge = bridge

    def collect(self) -> Iterator[Any]:
        s = self._bridge.stats()
        yield GaugeMetricFamily("midbrain_bridge_outbox_summaries", "Summaries waiting for the city's acknowledgement",
                                value=s["pending"] + s["in_batches"])
        yield GaugeMetricFamily("midbrain_bridge_outbox_oldest_age_seconds", "Age of the oldest summary waiting",
                                value=s["oldest_age_s"])
        for name, help_text in (("produced", "Summaries produced from hub summaries"),
                                ("acknowledged", "Summaries acknowledged by the city"),
                                ("rejected", "Summaries in batches the city refused for good (kept aside)"),
                                ("redelivered", "Hub summaries received again and not produced twice"),
                                ("invalid_summaries", "Hub summaries that failed validation"),
                                ("delivery_failures", "Delivery attempts that failed and will be retried"),
                                ("expired", "Summaries older than ttl_s, discarded unsent"),
                                ("dropped_full", "Summaries dropped because the outbox was full (drop_oldest)"),
                                ("full_refused", "Summaries refused because the outbox was full (left with the broker)"),
                                ("signature_refused", "Deliveries the city refused for their signature (kept, retried)"),
                                ("certificate_refused", "Deliveries not made: the city's certificate did not verify "
                                 "(kept, retried)"),
                                ("bytes_sent", "Request body bytes sent to the city (after gzip)")):
            yield CounterMetricFamily(f"midbrain_bridge_{name}", help_text, value=s[name])


def create_app(bridge: BridgeView) -> FastAPI:
    app = FastAPI(title="midbrain cloud bridge", version="1")
    registry = CollectorRegistry()
    registry.register(_OutboxCollector(bridge))

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {"status": "ok", "mqtt_connected": bridge.link.connected, "outbox": bridge.stats()}

    @app.get("/api/downlink")
    def downlink(limit: int = Query(100, ge=1, le=10_000)) -> list[dict[str, Any]]:
        """Items fetched from the city, newest first: refused here (and why), handed to the
        hub, its answer, and whether the city has that answer yet."""
        return bridge.downlink_state.items(limit)

    @app.get("/api/egress-log")
    def egress_log(limit: int = Query(100, ge=1, le=10_000), before: int | None = None) -> list[dict[str, Any]]:
        """Every batch that left the community, newest first: when, to whom, the sha256 of
        its body, the keys of the summaries in it, and the entry's chained signature."""
        return bridge.outbox.egress_log(limit, before)

    @app.get("/api/discarded")
    def discarded(limit: int = Query(100, ge=1, le=10_000)) -> list[dict[str, Any]]:
        """Summaries dropped unsent (outbox full under drop_oldest, or older than ttl_s), by key."""
        return bridge.outbox.discarded(limit)

    @app.get("/api/egress-log/verify")
    def egress_log_verify() -> dict[str, Any]:
        """Check every entry's hash, its link to the one before and its signature."""
        return bridge.outbox.verify_egress_log(bridge.key)

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app
