"""The hub's HTTP API and staff page. The app owns its HubService through ``lifespan``."""

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from contract.classes import CATALOG
from contract.endpoints import MqttEndpoint
from contract.messages import QUALITY_LEVELS
from contract.topology import Community
from hub.accounts import SESSION_TTL_S, AccountError, Accounts, Principal, Role
from hub.inference import WindowModel
from hub.service import HubService
from hub.settings import HubSettings
from hub.twin import DesiredPatch, TwinError
from hub.workorders import CATEGORIES, WorkOrderError, WorkOrders

STATIC = Path(__file__).parent / "static"
SESSION_COOKIE = "mb_session"


class Login(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class NewUser(Login):
    role: Role
    display: str = Field(default="", max_length=64)


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


class NewToken(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    role: Role


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

    def accounts_of(request: Request) -> Accounts:
        accounts = hub_of(request).accounts
        assert accounts is not None
        return accounts

    def principal(request: Request) -> Principal | None:
        """A machine client's bearer token, or a person's session cookie."""
        auth = request.headers.get("authorization", "")
        if auth[:7].lower() == "bearer ":
            return accounts_of(request).token(auth[7:].strip())
        cookie = request.cookies.get(SESSION_COOKIE)
        return accounts_of(request).session(cookie) if cookie else None

    def require(role: Role) -> Any:
        def check(request: Request) -> Principal:
            who = principal(request)
            if who is None:
                raise HTTPException(401, "login required (需要登录)")
            if not who.has(role):
                raise HTTPException(403, f"this needs the {role} role; you are {who.role} (权限不足)")
            return who
        return Depends(check)

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

    # -- accounts ----------------------------------------------------------------------

    @app.post("/api/login")
    def login(request: Request, body: Login) -> JSONResponse:
        try:
            token, who = accounts_of(request).login(body.name, body.password)
        except AccountError as exc:
            raise HTTPException(401, f"{exc} (用户名或密码错误)") from None
        response = JSONResponse({"name": who.name, "role": who.role})
        response.set_cookie(SESSION_COOKIE, token, max_age=SESSION_TTL_S, httponly=True, samesite="strict")
        return response

    @app.post("/api/logout")
    def logout(request: Request) -> JSONResponse:
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            accounts_of(request).logout(cookie)
        response = JSONResponse({"ok": True})
        response.delete_cookie(SESSION_COOKIE)
        return response

    @app.get("/api/me")
    def me(who: Principal = require("staff")) -> dict[str, str]:
        return {"name": who.name, "role": who.role, "kind": who.kind}

    @app.get("/api/users")
    def users(request: Request, who: Principal = require("admin")) -> list[dict[str, Any]]:
        return accounts_of(request).users()

    @app.post("/api/users", status_code=201)
    def add_user(request: Request, body: NewUser, who: Principal = require("admin")) -> dict[str, str]:
        accounts_of(request).add_user(body.name, body.password, body.role, body.display, actor=who.actor)
        return {"name": body.name, "role": body.role}

    @app.post("/api/tokens", status_code=201)
    def add_token(request: Request, body: NewToken, who: Principal = require("admin")) -> dict[str, str]:
        """A token for a machine client, shown this once."""
        return {"name": body.name, "role": body.role,
                "token": accounts_of(request).create_token(body.name, body.role, actor=who.actor)}

    @app.delete("/api/tokens/{name}")
    def revoke_token(request: Request, name: str, who: Principal = require("admin")) -> dict[str, bool]:
        accounts_of(request).revoke_token(name, actor=who.actor)
        return {"ok": True}

    @app.get("/api/audit")
    def audit(request: Request, target: str | None = None, limit: int = Query(200, ge=1, le=10_000),
              who: Principal = require("supervisor")) -> list[dict[str, Any]]:
        return accounts_of(request).audit_trail(target, limit)

    # -- work orders ---------------------------------------------------------------------

    @app.get("/api/work-order-categories")
    def categories() -> dict[str, dict[str, Any]]:
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
    def work_order(request: Request, order_id: int, who: Principal = require("volunteer")) -> dict[str, Any]:
        order = orders_of(request).get(order_id)
        if who.role == "volunteer" and not CATEGORIES[order["category"]].volunteers and order["assignee"] != who.name:
            raise HTTPException(403, "volunteers see only the work orders open to volunteers, and their own")
        return order

    @app.post("/api/work-orders", status_code=201)
    def new_work_order(request: Request, body: NewWorkOrder, who: Principal = require("staff")) -> dict[str, Any]:
        orders = orders_of(request)
        order_id = orders.create(source="request", actor=who.actor, **body.model_dump())
        return orders.get(order_id)

    @app.post("/api/work-orders/{order_id}/{action}")
    def act(request: Request, order_id: int, action: str, body: Action,
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
    def twin(request: Request, device: str) -> dict[str, Any]:
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
    def status_history(request: Request, device: str, limit: int = Query(100, ge=1, le=10_000)) -> list[dict[str, Any]]:
        known_device(request, device)
        return hub_of(request).twin.store.status_history(device, limit)

    @app.get("/healthz")
    def healthz(request: Request) -> dict[str, Any]:
        hub = hub_of(request)
        return {"status": "ok", "mqtt_connected": hub.writer.connected, "model": hub.scoring.model.name}

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
                # Last values that are not good: reason and level (contract QUALITY_LEVELS).
                "last_quality": {k: {"reason": r, "level": QUALITY_LEVELS[r]} for k, r in d.last_quality.items()},
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
        scores = hub_of(request).scoring.score_log
        assert scores is not None
        return scores.latest(device, metric, limit)

    @app.get("/api/alerts")
    def alerts(request: Request, limit: int = Query(100, ge=1, le=10_000)) -> list[dict[str, Any]]:
        return hub_of(request).alerting.log.latest(limit)

    @app.get("/api/dead-letters")
    def dead_letters(request: Request, reason: str | None = None,
                     topic: str | None = Query(None, description="a topic prefix, e.g. mb/v1/xihu-demo/gw-b1/"),
                     since: float | None = None, until: float | None = None,
                     limit: int = Query(100, ge=1, le=10_000)) -> list[dict[str, Any]]:
        """Dead letters, newest first: topic, reason, detail, time, size and the raw bytes."""
        store = hub_of(request).store
        assert store is not None
        return store.dead_letters(reason, limit, topic=topic, since=since, until=until)

    @app.get("/api/notices")
    def notices(request: Request, limit: int = Query(50, ge=1, le=1000)) -> list[dict[str, Any]]:
        """Notices and broadcasts the city sent (verified and applied), newest first: what the
        staff page (and kiosks) show. Expired ones are marked."""
        store = hub_of(request).downlink.store
        now = time.time()
        return [{"seq": i["seq"], "issued_at": i["issued_at"], "expires_at": i["expires_at"],
                 "expired": i["expires_at"] is not None and i["expires_at"] < now,
                 **{k: v for k, v in i["body"].items() if k != "kind"}}
                for i in store.items("notice", limit) if i["status"] == "applied"]

    @app.get("/api/downlink")
    def downlink(request: Request, limit: int = Query(100, ge=1, le=1000)) -> dict[str, Any]:
        """Every city item and what became of it (applied, or refused and why), and the items
        that failed verification."""
        downlink = hub_of(request).downlink
        return {"items": downlink.store.items(None, limit), "unverified": downlink.store.unverified_items(limit),
                "counts": downlink.counts}

    @app.get("/api/models")
    def models(request: Request) -> dict[str, Any]:
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
    async def stream(request: Request) -> StreamingResponse:
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
    async def egress_log(limit: int = Query(100, ge=1, le=1000)) -> dict[str, Any]:
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
