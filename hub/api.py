"""The hub's HTTP API and staff page. The app owns its HubService through ``lifespan``."""

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from contract.classes import CATALOG
from contract.endpoints import MqttEndpoint
from contract.topology import Community
from hub.inference import WindowModel
from hub.service import HubService
from hub.settings import HubSettings

STATIC = Path(__file__).parent / "static"


def create_app(settings: HubSettings, community: Community, mqtt: MqttEndpoint,
               ready: asyncio.Event | None = None, model: WindowModel | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with HubService(settings, community, mqtt, model=model) as hub:
            app.state.hub = hub
            if ready is not None:
                ready.set()
            yield

    app = FastAPI(title="midbrain community hub (社区中脑)", version="1", lifespan=lifespan)

    def hub_of(request: Request) -> HubService:
        return request.app.state.hub  # type: ignore[no-any-return]

    @app.get("/healthz")
    def healthz(request: Request) -> dict[str, Any]:
        hub = hub_of(request)
        return {"status": "ok", "mqtt_connected": hub.ingest.connected, "model": hub.model.name}

    @app.get("/metrics")
    def metrics(request: Request) -> Response:
        return Response(generate_latest(hub_of(request).metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/api/stats")
    def stats(request: Request) -> dict[str, int]:
        return hub_of(request).stats()

    @app.get("/api/devices")
    def devices(request: Request, building: str | None = None,
                device_class: str | None = Query(None, alias="class")) -> list[dict[str, Any]]:
        hub = hub_of(request)
        now = time.time()
        out = []
        for d in hub.registry.devices.values():
            if (building and d.building != building) or (device_class and d.device_class != device_class):
                continue
            spec = CATALOG[d.device_class]
            out.append({
                "id": d.id, "name": d.name, "gateway": d.gateway, "building": d.building,
                "class": d.device_class.value, "class_zh": spec.label_zh, "class_en": spec.label_en,
                "online": hub.registry.online(d, now), "last_seen": d.last_seen, "messages": d.messages,
                "last_values": d.last_values,
                "metrics": {m.name: {"zh": m.label_zh, "en": m.label_en, "unit": m.unit} for m in spec.metrics},
            })
        return out

    @app.get("/api/gateways")
    def gateways(request: Request) -> list[dict[str, Any]]:
        return [vars(g) for g in hub_of(request).registry.gateways.values()]

    @app.get("/api/telemetry")
    def telemetry(request: Request, device: str | None = None, metric: str | None = None,
                  since: float | None = None, limit: int = Query(200, ge=1, le=10_000)) -> list[dict[str, Any]]:
        store = hub_of(request).store
        assert store is not None
        return store.telemetry(device, metric, since, limit)

    @app.get("/api/windows")
    def windows(request: Request, device: str | None = None, metric: str | None = None,
                limit: int = Query(100, ge=1, le=10_000)) -> list[dict[str, Any]]:
        """Sliding 1-minute window aggregates of scored metrics, with the model's score."""
        store = hub_of(request).store
        assert store is not None
        return store.windows(device, metric, limit)

    @app.get("/api/alerts")
    def alerts(request: Request, limit: int = Query(100, ge=1, le=10_000)) -> list[dict[str, Any]]:
        store = hub_of(request).store
        assert store is not None
        return store.alerts(limit)

    @app.get("/api/dead-letters")
    def dead_letters(request: Request, reason: str | None = None,
                     limit: int = Query(100, ge=1, le=10_000)) -> list[dict[str, Any]]:
        store = hub_of(request).store
        assert store is not None
        return store.dead_letters(reason, limit)

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/staff")

    @app.get("/staff", include_in_schema=False)
    def staff() -> FileResponse:
        return FileResponse(STATIC / "staff.html", media_type="text/html; charset=utf-8")

    return app
