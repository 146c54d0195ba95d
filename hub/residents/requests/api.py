"""The residents' requests' JSON API (an APIRouter the hub's app includes).

Bodies are JSON, or ``multipart/form-data`` where a photo goes with them (the same fields,
plus a file field ``photo``): ``POST /api/requests`` and ``POST /api/requests/info``. A
volunteer's or staff member's photo of a work order: ``POST /api/order-photos`` (multipart:
``order_id``, ``photo``). Bodies are decoded strictly (invalid UTF-8 is a 400), and every
refusal is a 4xx with ``detail`` in Chinese and English: never a 500. A PIN only ever travels
in a POST body, never in a URL.

=======================================  ==========  ========================================
route                                    who         what
=======================================  ==========  ========================================
POST /api/requests                       anyone      report (kiosk|phone); staff: counter|hotline
POST /api/requests/track                 anyone      {ticket, pin} -> the resident's view
POST /api/requests/info                  anyone      {ticket, pin, text} (+ photo)
POST /api/requests/rate                  anyone      {ticket, pin, stars, comment}
POST /api/requests/reopen                anyone      {ticket, pin, note}
POST /api/triage                         anyone      {text} -> live suggestion
GET  /api/places                         anyone      the place picker
GET  /api/triage-queue                   supervisor  low-confidence requests
POST /api/triage-queue/{id}              supervisor  {category, urgency}: confirm
GET  /api/work-orders/{id}/requests      staff       tickets following an order
GET  /api/work-orders/{id}/photos        volunteer   photos of an order (ids)
POST /api/order-photos                   volunteer   a photo on an order (multipart)
GET  /api/request-photos/{id}            volunteer   a photo's JPEG
=======================================  ==========  ========================================
"""

import json
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any, Literal

from fastapi import APIRouter, Path as PathParam, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hub.accounts import Principal
from hub.categories import CATEGORIES
from hub.residents.requests.errors import RequestError
from hub.residents.requests.intake import CHANNELS, EMERGENCY_NUMBERS, Intake, NewRequest, clean_text
from hub.residents.requests.pin_guard import PinRefused
from hub.web_auth import principal, require



def _id() -> Any:
    """A path id as SQLite's INTEGER holds it (a new Param per route: FastAPI names it after its first use)."""
    return PathParam(ge=1, le=2**63 - 1)


TICKET = Field(min_length=1, max_length=40)
PIN = Field(min_length=1, max_length=12)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_max_length=20_000)


class RequestBody(_Body):
    channel: Literal["kiosk", "phone", "counter", "hotline"] = "phone"
    text: str
    place: str = Field(max_length=80)
    contact_pref: Literal["none", "phone", "sms", "kiosk"] = "none"
    household: str | None = Field(default=None, max_length=64)
    phone: str | None = Field(default=None, max_length=32)


class TicketBody(_Body):
    ticket: str = TICKET
    pin: str = PIN


class InfoBody(TicketBody):
    text: str = ""


class RateBody(TicketBody):
    stars: int = Field(ge=1, le=5)
    comment: str = Field(default="", max_length=2000)


class ReopenBody(TicketBody):
    note: str


class TriageBody(_Body):
    text: str


class ConfirmBody(_Body):
    category: str = Field(max_length=32)
    urgency: Literal["emergency", "urgent", "normal"]


class AddressLimit:
    """At most ``per_minute`` calls per client address in any minute (anonymous posts, live triage)."""

    def __init__(self, per_minute: int, *, max_keys: int = 10_000, clock: Callable[[], float] = time.monotonic):
        self.per_minute = per_minute
        self._max_keys = max_keys
        self._clock = clock
        self._calls: OrderedDict[str, deque[float]] = OrderedDict()

    def take(self, address: str) -> None:
        now = self._clock()
        calls = self._calls.setdefault(address, deque())
        self._calls.move_to_end(address)
        while calls and now - calls[0] >= 60:
            calls.popleft()
        if len(calls) >= self.per_minute:
            raise RequestError("提交太频繁，请稍后再试", "too many requests from this address: wait a minute", 429,
                               "rate_limited")
        calls.append(now)
        while len(self._calls) > self._max_keys:
            self._calls.popitem(last=False)


def request_error(request: Request, exc: Exception) -> JSONResponse:
    """The JSON answer to a RequestError (or a PIN limit): 4xx, ``detail`` in both languages."""
    if isinstance(exc, PinRefused):
        return JSONResponse({"detail": str(exc)}, status_code=429, headers={"Retry-After": str(exc.retry_after_s)})
    assert isinstance(exc, RequestError)
    return JSONResponse({"detail": str(exc), "zh": exc.zh, "en": exc.en}, status_code=exc.status)


async def _fields(request: Request, model: type[_Body]) -> tuple[Any, bytes | None]:
    """The body as ``model`` (JSON, or multipart form fields) and its photo file's bytes, if any."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    photo: bytes | None = None
    if kind == "multipart/form-data":
        try:
            form = await request.form(max_files=1, max_fields=20)
        except Exception as exc:  # python-multipart's and starlette's parse errors
            raise RequestError("表单无法读取", f"unreadable form: {type(exc).__name__}", 400, "body") from None
        data: dict[str, Any] = {}
        for key, value in form.multi_items():
            if isinstance(value, str):
                data[key] = value
            elif key == "photo":
                photo = await value.read()
                if not photo and not value.filename:
                    photo = None  # an empty file field: no photo chosen
        await form.close()
    elif kind in ("application/json", ""):
        raw = await request.body()
        try:
            data = json.loads(raw.decode("utf-8", errors="strict"))
        except UnicodeDecodeError:
            raise RequestError("内容不是有效的 UTF-8 文本", "the body is not valid UTF-8", 400, "utf8") from None
        except ValueError:
            raise RequestError("内容不是有效的 JSON", "the body is not valid JSON", 400, "body") from None
    else:
        raise RequestError("不支持的内容类型", f"unsupported content type {kind[:40]!r}: send JSON or a form", 415,
                           "body")
    if not isinstance(data, dict):
        raise RequestError("内容应为一个 JSON 对象", "the body must be a JSON object", 422, "body")
    if "stars" in data and isinstance(data["stars"], str) and data["stars"].isdigit():
        data["stars"] = int(data["stars"])
    try:
        return model.model_validate(data), photo
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise RequestError(f"字段 {where} 不正确", f"{where}: {first['msg']}", 422, "invalid") from None


def _client(request: Request) -> str:
    return request.client.host if request.client else "?"


def requests_router(intake_of: Callable[[Request], Intake], submit_per_minute: int = 30) -> APIRouter:
    router = APIRouter()
    anonymous = AddressLimit(submit_per_minute)
    suggestions = AddressLimit(submit_per_minute * 4)  # live suggestions: a few per report typed

    @router.post("/api/requests", status_code=201)
    async def submit(request: Request) -> JSONResponse:
        """A resident's report. Anonymous (a resident's own phone or a kiosk page): channel kiosk
        or phone, limited per address; a kiosk token: kiosk; staff may enter counter or hotline
        reports, recorded with their name as ``entered_by``."""
        intake = intake_of(request)
        who = principal(request)
        body, photo = await _fields(request, RequestBody)
        if body.channel in ("counter", "hotline"):
            if who is None or not who.has("staff"):
                raise RequestError("只有工作人员可以代居民登记", f"only staff enter {body.channel} requests", 403,
                                   "forbidden")
        elif who is None:
            anonymous.take(_client(request))
        entered_by = who.actor if who is not None and body.channel in ("counter", "hotline") else ""
        receipt = await run_in_threadpool(intake.submit, NewRequest(
            channel=body.channel, text=body.text, place=body.place, contact_pref=body.contact_pref,
            household=body.household, phone=body.phone, photo=photo, entered_by=entered_by))
        return JSONResponse(receipt.as_json(), status_code=201, headers={"Cache-Control": "no-store"})

    @router.post("/api/requests/track")
    async def track(request: Request) -> JSONResponse:
        body, _ = await _fields(request, TicketBody)
        view = await run_in_threadpool(intake_of(request).track, body.ticket, body.pin, _client(request))
        return JSONResponse(view, headers={"Cache-Control": "no-store"})

    @router.post("/api/requests/info")
    async def info(request: Request) -> JSONResponse:
        body, photo = await _fields(request, InfoBody)
        view = await run_in_threadpool(intake_of(request).add_info, body.ticket, body.pin, _client(request),
                                       body.text, photo)
        return JSONResponse(view, headers={"Cache-Control": "no-store"})

    @router.post("/api/requests/rate")
    async def rate(request: Request) -> JSONResponse:
        body, _ = await _fields(request, RateBody)
        view = await run_in_threadpool(intake_of(request).rate, body.ticket, body.pin, _client(request), body.stars,
                                       body.comment)
        return JSONResponse(view, headers={"Cache-Control": "no-store"})

    @router.post("/api/requests/reopen")
    async def reopen(request: Request) -> JSONResponse:
        body, _ = await _fields(request, ReopenBody)
        view = await run_in_threadpool(intake_of(request).reopen, body.ticket, body.pin, _client(request), body.note)
        return JSONResponse(view, headers={"Cache-Control": "no-store"})

    @router.post("/api/triage")
    async def triage(request: Request) -> dict[str, Any]:
        """The live suggestion while a resident types: category, urgency, confidence, and the
        emergency numbers when it looks like an emergency. Nothing is stored."""
        intake = intake_of(request)
        suggestions.take(_client(request))
        body, _ = await _fields(request, TriageBody)
        text = clean_text(body.text, intake.settings.text_max_chars)
        result = (await run_in_threadpool(intake.triager.triage, [text]))[0]
        return {**result.as_json(), "emergency": result.urgency == "emergency",
                "emergency_numbers": list(EMERGENCY_NUMBERS) if result.urgency == "emergency" else []}

    @router.get("/api/places")
    def places(request: Request) -> list[dict[str, Any]]:
        return [vars(p) for p in intake_of(request).places.all()]

    @router.get("/api/request-channels")
    def channels() -> list[str]:
        return list(CHANNELS)

    @router.get("/api/triage-queue")
    def queue(request: Request, limit: int = Query(200, ge=1, le=2000),
              who: Principal = require("supervisor")) -> list[dict[str, Any]]:
        return intake_of(request).queue(limit)

    @router.post("/api/triage-queue/{request_id}")
    async def confirm(request: Request, request_id: int = _id(), who: Principal = require("supervisor")) -> dict[str, Any]:
        body, _ = await _fields(request, ConfirmBody)
        receipt = await run_in_threadpool(intake_of(request).confirm, request_id, body.category, body.urgency, who)
        return {"ticket": receipt.ticket, "category": receipt.category, "urgency": receipt.urgency,
                "work_order_id": receipt.work_order_id, "merged": receipt.merged}

    @router.get("/api/work-orders/{order_id}/requests")
    def order_requests(request: Request, order_id: int = _id(), who: Principal = require("staff")) -> list[str]:
        return intake_of(request).order_requests(order_id)

    def may_see(intake: Intake, order_id: int, who: Principal) -> None:
        order = intake.orders.get(order_id)
        if who.role == "volunteer" and not CATEGORIES[order["category"]].volunteers and order["assignee"] != who.name:
            raise RequestError("无权查看这个工单", "volunteers see only the work orders open to volunteers", 403,
                               "forbidden")

    @router.get("/api/work-orders/{order_id}/photos")
    def order_photos(request: Request, order_id: int = _id(), who: Principal = require("volunteer")) -> list[dict[str, Any]]:
        intake = intake_of(request)
        may_see(intake, order_id, who)
        return [{**p, "url": f"/api/request-photos/{p['id']}"} for p in intake.order_photos(order_id)]

    @router.post("/api/order-photos", status_code=201)
    async def add_order_photo(request: Request, who: Principal = require("volunteer")) -> dict[str, Any]:
        """multipart: ``order_id`` and ``photo``; a volunteer only on an order assigned to them."""
        form, photo = await _fields(request, _OrderPhoto)
        if photo is None:
            raise RequestError("请选择一张照片", "no photo in the form (field photo)", 422, "photo")
        photo_id = await run_in_threadpool(intake_of(request).attach_photo_to_order, form.order_id, photo, who)
        return {"id": photo_id, "url": f"/api/request-photos/{photo_id}"}

    @router.get("/api/request-photos/{photo_id}")
    def photo(request: Request, photo_id: int = _id(), who: Principal = require("volunteer")) -> Response:
        intake = intake_of(request)
        found = intake.store.photo(photo_id)
        if found is None:
            raise RequestError("没有这张照片", "no such photo", 404, "unknown")
        order = found["work_order_id"]
        if order is None and found["request_id"] is not None:
            row = intake.store.get(found["request_id"])
            order = row["work_order_id"] if row else None
        if who.role == "volunteer":
            if order is None:
                raise RequestError("无权查看这张照片", "not a photo of a work order you may see", 403, "forbidden")
            may_see(intake, order, who)
        return Response(found["data"], media_type=found["mime"],
                        headers={"Cache-Control": "private, no-store", "Content-Disposition": "inline"})

    return router


class _OrderPhoto(_Body):
    order_id: int = Field(ge=1, le=2**63 - 1)
