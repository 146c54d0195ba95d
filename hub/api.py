"""The hub's HTTP API and staff page. The app owns its HubService through ``lifespan``."""

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, HTTPException, Path as PathParam, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel, Field

from contract.classes import CATALOG
from contract.endpoints import MqttEndpoint
from contract.messages import QUALITY_LEVELS
from contract.topology import Community
from hub.accounts import AccountError, Principal
from hub.inference import WindowModel
from hub.login_guard import LoginGuard
from hub.residents.requests import Intake, RequestError
from hub.residents.requests.api import request_error, requests_router
from hub.residents.requests.pin_guard import PinRefused
from hub.residents.triage import Triager
from hub.service import HubService
from hub.settings import HubSettings
from hub.twin import DesiredPatch, TwinError
from hub.web_auth import accounts_of, accounts_router, require
from hub.web_security import SameOrigin, SecurityHeaders
from hub.workorders import CATEGORIES, WorkOrderError, WorkOrders
from servicekit.http import BodyLimit
from servicekit.openapi import REFUSAL_RESPONSES, validation_refusal

STATIC = Path(__file__).parent / "static"
ORDER_ID = PathParam(ge=1, le=2**63 - 1)  # SQLite's INTEGER: a larger id is a 422, not an overflow
DOCS = ("/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json")


class NewWorkOrder(BaseModel):
    """A request for work, e.g. a resident's report from a kiosk (through its API token)."""

    category: str
    title: str = Field(min_length=1, max_length=120)
    description: str = Field(default="", max_length=2000)
    building: str | None = Field(default=None, max_length=64)
    device: str | None = Field(default=None, max_length=64)
    severity: str = Field(default="info", pattern="^(info|warning|critical)$")


class Action(BaseModel):
    note: str = Field(default="", max_length=2000)
    assignee: str | None = Field(default=None, max_length=64)


def create_app(settings: HubSettings, community: Community, mqtt: MqttEndpoint,
               ready: asyncio.Event | None = None, model: WindowModel | None = None,
               triager: Triager | None = None) -> FastAPI:
    web_metrics = CollectorRegistry()  # the HTTP layer's own counters, beside the hub's in /metrics
    guard = LoginGuard(registry=web_metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            async with HubService(settings, community, mqtt, model=model, triager=triager) as hub:
                app.state.hub = hub
                if ready is not None:
                    ready.set()
                yield
        finally:
            guard.close()

    docs = settings.api_docs  # Swagger UI loads from a CDN: for development only
    app = FastAPI(title="midbrain community hub (社区中脑)", version="1", lifespan=lifespan,
                  docs_url=DOCS[0] if docs else None, redoc_url=DOCS[2] if docs else None,
                  openapi_url=DOCS[3] if docs else None,
                  responses=REFUSAL_RESPONSES)  # its 422s carry a sentence, or FastAPI's list
    app.add_middleware(SameOrigin, registry=web_metrics)
    with_photo = settings.residents.photo_max_bytes + 64 * 1024  # a photo and the form around it
    app.add_middleware(BodyLimit, default_bytes=64 * 1024,
                       route_bytes={"/api/login": 4096, "/api/requests": with_photo, "/api/requests/info": with_photo,
                                    "/api/order-photos": with_photo},
                       inflated_bytes=64 * 1024, registry=web_metrics)
    app.add_middleware(SecurityHeaders, exempt=frozenset(DOCS) if docs else frozenset())
    app.include_router(accounts_router(guard, settings.cookie_secure))

    def intake_of(request: Request) -> Intake:
        intake = request.app.state.hub.residents
        assert intake is not None
        return intake  # type: ignore[no-any-return]

    app.include_router(requests_router(intake_of, settings.residents.submit_per_minute))
    app.add_exception_handler(RequestError, request_error)
    app.add_exception_handler(PinRefused, request_error)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    def hub_of(request: Request) -> HubService:
        return request.app.state.hub  # type: ignore[no-any-return]

    def orders_of(request: Request) -> WorkOrders:
        orders = hub_of(request).workorders
        assert orders is not None
        return orders

    @app.exception_handler(WorkOrderError)
    async def work_order_error(request: Request, exc: WorkOrderError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=exc.status)

    @app.exception_handler(AccountError)
    async def account_error(request: Request, exc: AccountError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        """422 with FastAPI's error list, made JSON-safe: a NaN or infinity in the input is
        echoed in the errors, and JSON has no such numbers (it was a 500)."""
        return validation_refusal(exc)

    # -- work orders ---------------------------------------------------------------------

    @app.get("/api/work-order-categories")
    def categories(who: Principal = require("volunteer", "kiosk")) -> dict[str, dict[str, Any]]:
        return {k: {"zh": c.label_zh, "en": c.label_en, "sla_minutes": c.sla_minutes, "volunteers": c.volunteers}
                for k, c in CATEGORIES.items()}

    @app.get("/api/work-orders")
    def work_orders(request: Request, status: str | None = None, assignee: str | None = None,
                    building: str | None = None, limit: int = Query(200, ge=1, le=2000),
                    who: Principal = require("volunteer")) -> list[dict[str, Any]]:
        """Most urgent first (escalated, then by due time). Volunteers see what they may claim."""
        return orders_of(request).find(status, assignee, building, volunteer_only=who.role == "volunteer",
                                       limit=limit)

    @app.get("/api/work-orders/{order_id}")
    def work_order(request: Request, order_id: int = ORDER_ID, who: Principal = require("volunteer")) -> dict[str, Any]:
        order = orders_of(request).get(order_id)
        if who.role == "volunteer" and not CATEGORIES[order["category"]].volunteers and order["assignee"] != who.name:
            raise HTTPException(403, "volunteers see only the work orders open to volunteers, and their own")
        return order

    @app.post("/api/work-orders", status_code=201)
    def new_work_order(request: Request, body: NewWorkOrder,
                       who: Principal = require("staff", "kiosk")) -> dict[str, Any]:
        orders = orders_of(request)
        order_id = orders.create(source="request", actor=who.actor, **body.model_dump())
        return orders.get(order_id)

    @app.post("/api/work-orders/{order_id}/{action}")
    def act(request: Request, action: str, body: Action, order_id: int = ORDER_ID,
            who: Principal = require("volunteer")) -> dict[str, Any]:
        if action == "assign" and body.assignee not in {u["name"] for u in accounts_of(request).users()
                                                        if not u["disabled"]}:
            raise HTTPException(422, f"no active user {body.assignee!r} to assign to")
        order = orders_of(request).act(order_id, action, who, note=body.note, assignee=body.assignee)
        accounts_of(request).audit(who.actor, f"work_order.{action}", f"work_order:{order_id}",
                                   {"status": order["status"], "assignee": order["assignee"]})
        return order

    # -- device twin -------------------------------------------------------------------

    def known_device(request: Request, device: str) -> None:
        if device not in hub_of(request).registry.devices:
            raise HTTPException(404, f"no device {device!r}")

    @app.get("/api/devices/{device}/twin")
    def twin(request: Request, device: str, who: Principal = require("staff")) -> dict[str, Any]:
        known_device(request, device)
        return hub_of(request).twin.view(device)

    @app.put("/api/devices/{device}/desired")
    async def set_desired(request: Request, device: str, patch: DesiredPatch,
                          who: Principal = require("supervisor")) -> dict[str, Any]:
        known_device(request, device)
        try:
            return await hub_of(request).twin.set_desired(device, patch, who.actor)
        except TwinError as exc:
            raise HTTPException(422, str(exc)) from None

    @app.get("/api/devices/{device}/status-history")
    def status_history(request: Request, device: str, limit: int = Query(100, ge=1, le=10_000),
                       who: Principal = require("staff")) -> list[dict[str, Any]]:
        known_device(request, device)
        return hub_of(request).twin.store.status_history(device, limit)

    @app.get("/healthz")
    def healthz(request: Request) -> dict[str, Any]:
        hub = hub_of(request)
        return {"status": "ok", "mqtt_connected": hub.writer.connected, "model": hub.scoring.model.name}

    @app.get("/metrics", response_class=Response)  # Prometheus text, not JSON
    def metrics(request: Request) -> Response:
        """Counts only (no device, account or address in a label): open to a Prometheus scraper."""
        return Response(generate_latest(hub_of(request).metrics.registry) + generate_latest(web_metrics),
                        media_type=CONTENT_TYPE_LATEST)

    @app.get("/api/stats")
    def stats(request: Request, who: Principal = require("staff")) -> dict[str, int]:
        return hub_of(request).stats()

    @app.get("/api/devices")
    def devices(request: Request, building: str | None = None,
                device_class: str | None = Query(None, alias="class"),
                who: Principal = require("staff")) -> list[dict[str, Any]]:
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
                # Last values that are not good: reason and level (contract QUALITY_LEVELS).
                "last_quality": {k: {"reason": r, "level": QUALITY_LEVELS[r]} for k, r in d.last_quality.items()},
                "metrics": {m.name: {"zh": m.label_zh, "en": m.label_en, "unit": m.unit} for m in spec.metrics},
            })
        return out

    @app.get("/api/normals")
    def normals(request: Request, who: Principal = require("staff")) -> list[dict[str, Any]]:
        """Each device's learned normal: state (warming up n/N, active, refit at), its
        false-alarm budget and the alerts spent in the trailing week, last score, model version."""
        detectors = hub_of(request).normals
        return detectors.status() if detectors is not None else []

    @app.get("/api/gateways")
    def gateways(request: Request, who: Principal = require("staff")) -> list[dict[str, Any]]:
        return [vars(g) for g in hub_of(request).registry.gateways.values()]

    @app.get("/api/telemetry")
    def telemetry(request: Request, device: str | None = None, metric: str | None = None,
                  since: float | None = None, limit: int = Query(200, ge=1, le=10_000),
                  who: Principal = require("staff")) -> list[dict[str, Any]]:
        store = hub_of(request).store
        assert store is not None
        return store.telemetry(device, metric, since, limit)

    @app.get("/api/windows")
    def windows(request: Request, device: str | None = None, metric: str | None = None,
                limit: int = Query(100, ge=1, le=10_000), who: Principal = require("staff")) -> list[dict[str, Any]]:
        """Sliding 1-minute window aggregates of scored metrics, with the model's score."""
        scores = hub_of(request).scoring.score_log
        assert scores is not None
        return scores.latest(device, metric, limit)

    @app.get("/api/alerts")
    def alerts(request: Request, limit: int = Query(100, ge=1, le=10_000),
               who: Principal = require("staff")) -> list[dict[str, Any]]:
        return hub_of(request).alerting.log.latest(limit)

    @app.get("/api/dead-letters")
    def dead_letters(request: Request, reason: str | None = None,
                     topic: str | None = Query(None, description="a topic prefix, e.g. mb/v1/xihu-demo/gw-b1/"),
                     since: float | None = None, until: float | None = None,
                     limit: int = Query(100, ge=1, le=10_000),
                     who: Principal = require("staff")) -> list[dict[str, Any]]:
        """Dead letters, newest first: topic, reason, detail, time, size and the raw bytes."""
        store = hub_of(request).store
        assert store is not None
        return store.dead_letters(reason, limit, topic=topic, since=since, until=until)

    @app.get("/api/notices")
    def notices(request: Request, limit: int = Query(50, ge=1, le=1000),
                who: Principal = require("volunteer", "kiosk")) -> list[dict[str, Any]]:
        """Notices and broadcasts the city sent (verified and applied), newest first: what the
        staff page (and kiosks) show. Expired ones are marked."""
        store = hub_of(request).downlink.store
        now = time.time()
        return [{"seq": i["seq"], "issued_at": i["issued_at"], "expires_at": i["expires_at"],
                 "expired": i["expires_at"] is not None and i["expires_at"] < now,
                 **{k: v for k, v in i["body"].items() if k != "kind"}}
                for i in store.items("notice", limit) if i["status"] == "applied"]

    @app.get("/api/downlink")
    def downlink(request: Request, limit: int = Query(100, ge=1, le=1000),
                 who: Principal = require("staff")) -> dict[str, Any]:
        """Every city item and what became of it (applied, or refused and why), and the items
        that failed verification."""
        downlink = hub_of(request).downlink
        return {"items": downlink.store.items(None, limit), "unverified": downlink.store.unverified_items(limit),
                "counts": downlink.counts}

    @app.get("/api/models")
    def models(request: Request, who: Principal = require("staff")) -> dict[str, Any]:
        hub = hub_of(request)
        model = hub.scoring.model
        return {"model": model.name, "sha256": model.sha256, "manifest": model.manifest,
                "events": hub.model_reload.events[-50:]}

    @app.post("/api/models/reload")
    async def reload_models(request: Request, who: Principal = require("admin")) -> dict[str, Any]:
        """Check the model folder now instead of at the next poll."""
        result = await hub_of(request).model_reload.reload()
        accounts_of(request).audit(who.actor, "model.reload", "model", result)
        return result

    @app.get("/api/stream")
    async def stream(request: Request, who: Principal = require("staff")) -> StreamingResponse:
        """Server-sent events: a ``change`` event whenever devices, alerts or work orders
        change (checked every second). Each stream ends after 5 minutes or when the server
        stops; browsers reconnect by themselves."""
        hub = hub_of(request)
        stopping: asyncio.Event = getattr(request.app.state, "http_stopping", None) or asyncio.Event()

        async def events() -> AsyncIterator[str]:
            yield "retry: 2000\n\n"
            last: dict[str, Any] | None = None
            end = time.monotonic() + 300
            while time.monotonic() < end and not stopping.is_set():
                now = hub.live_snapshot()
                if now != last:
                    yield f"event: change\ndata: {json.dumps(now)}\n\n"
                    last = now
                try:
                    await asyncio.wait_for(stopping.wait(), 1.0)
                except TimeoutError:
                    pass

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/staff")

    @app.get("/staff", include_in_schema=False)
    def staff() -> FileResponse:
        return FileResponse(STATIC / "staff.html", media_type="text/html; charset=utf-8")

    @app.get("/api/egress-log")
    async def egress_log(limit: int = Query(100, ge=1, le=1000), who: Principal = require("staff")) -> dict[str, Any]:
        """What left the community: the bridge's signed egress log, newest first, and the
        check of its whole chain (every hash, link and signature)."""
        if not settings.bridge_url:
            raise HTTPException(404, "hub.bridge_url is not set: the hub does not know where the bridge is")
        try:
            async with httpx.AsyncClient(base_url=settings.bridge_url, timeout=10) as bridge:
                entries = await bridge.get("/api/egress-log", params={"limit": limit})
                verified = await bridge.get("/api/egress-log/verify")
            entries.raise_for_status()
            verified.raise_for_status()
        except httpx.HTTPError as exc:
            raise HTTPException(502, f"the bridge at {settings.bridge_url} did not answer: {exc}") from None
        return {"bridge": settings.bridge_url, "verified": verified.json(), "entries": entries.json()}

    @app.get("/egress", include_in_schema=False)
    def egress_page() -> FileResponse:
        """出境记录: what left the community, for staff and the residents' committee."""
        return FileResponse(STATIC / "egress.html", media_type="text/html; charset=utf-8")

    return app
