"""Intake of residents' requests: validate, triage, and route; tracking by ticket and PIN.

``submit``: validate (text, place, contact, photo) -> triage -> an emergency raises a
critical alert at once and opens a critical work order (never queued); a triage less sure
than ``min_confidence`` waits in the supervisors' triage queue (``confirm``); otherwise a
report of a problem already on an active work order (``duplicates.py``) is merged into it,
else a new work order is opened. Work orders are used only through
:class:`hub.workorders.WorkOrders`; this component owns only its own tables (store.py).

The resident keeps a ticket and a 6-digit PIN: ``track``, ``add_info``, ``rate`` and
``reopen`` need both. A wrong PIN, an unknown ticket and another community's ticket all get
the same answer after the same work, limited per ticket and per client address (pin_guard.py).
"""

import logging
import re
import threading
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from hub.accounts import Principal
from hub.categories import CATEGORIES, TRIAGE_CATEGORIES
from hub.residents.requests.duplicates import Report, best_match
from hub.residents.requests.errors import RequestError, not_found
from hub.residents.requests.identity import Identity, new_pin
from hub.residents.requests.metrics import RequestMetrics
from hub.residents.requests.photos import Photo, clean_photo
from hub.residents.requests.pin_guard import PinGuard
from hub.residents.requests.places import Places
from hub.residents.requests.store import RequestStore, StoredRequest
from hub.residents.triage import URGENCIES, Triager
from hub.settings import ResidentsSettings
from hub.workorders import ACTIVE, WorkOrderError, WorkOrders

log = logging.getLogger(__name__)

CHANNELS = ("kiosk", "phone", "counter", "hotline", "open311")
CONTACT_PREFS = ("none", "phone", "sms", "kiosk")
EMERGENCY_NUMBERS = ({"number": "119", "zh": "火警", "en": "Fire"},
                     {"number": "120", "zh": "急救", "en": "Ambulance"},
                     {"number": "110", "zh": "报警", "en": "Police"})
SEVERITY = {"emergency": "critical", "urgent": "warning", "normal": "info"}
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")
_PHONE = re.compile(r"^\+?[0-9][0-9 -]{4,19}$")
_STATUS_ACTIONS = ("create", "claim", "assign", "start", "resolve", "verify", "reopen")


@dataclass(frozen=True)
class NewRequest:
    channel: str  # one of CHANNELS
    text: str
    place: str  # a Places id: "b1", "b1/u2", "garage"
    contact_pref: str = "none"  # one of CONTACT_PREFS
    household: str | None = None  # a household code (kept hashed)
    phone: str | None = None  # kept hashed
    photo: bytes | None = None
    entered_by: str = ""  # the staff actor (counter, hotline) or the Open311 client


@dataclass(frozen=True)
class Receipt:
    ticket: str
    pin: str
    category: str
    urgency: str
    emergency: bool
    work_order_id: int | None
    queued: bool
    merged: bool
    request_id: int = 0

    def as_json(self) -> dict[str, Any]:
        spec = CATEGORIES[self.category]
        return {"ticket": self.ticket, "pin": self.pin, "category": self.category, "category_zh": spec.label_zh,
                "category_en": spec.label_en, "urgency": self.urgency, "emergency": self.emergency,
                "emergency_numbers": list(EMERGENCY_NUMBERS) if self.emergency else [], "queued": self.queued,
                "merged": self.merged}


def clean_text(text: str, max_chars: int, *, required: bool = True) -> str:
    """NFC, control and direction-override characters removed, trimmed; RequestError when
    empty (if ``required``) or longer than ``max_chars``."""
    text = _CONTROL.sub("", unicodedata.normalize("NFC", text)).strip()
    if required and not text:
        raise RequestError("请写下您要反映的问题", "the text is empty", 422, "empty")
    if len(text) > max_chars:
        raise RequestError(f"内容太长（最多 {max_chars} 字）", f"the text is longer than {max_chars} characters",
                           422, "too_long")
    return text


class Intake:
    def __init__(self, store: RequestStore, orders: WorkOrders, places: Places, triager: Triager,
                 identity: Identity, settings: ResidentsSettings, metrics: RequestMetrics, *,
                 raise_alert: Callable[[float, str, str, str], object], timezone: str = "Asia/Shanghai",
                 role_of: Callable[[str], str | None] = lambda actor: None,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.orders = orders
        self.places = places
        self.triager = triager
        self.identity = identity
        self.settings = settings
        self.metrics = metrics
        self.guard = PinGuard(settings.pin_attempts)
        self._raise_alert = raise_alert  # (at, place, category, ticket): Alerting.raise_resident_alert
        self._tz = ZoneInfo(timezone)
        self._role_of = role_of
        self._clock = clock
        self._route_lock = threading.Lock()  # duplicate check and order creation, one request at a time

    # -- intake --------------------------------------------------------------------------

    def submit(self, new: NewRequest) -> Receipt:
        """Take a request; RequestError (nothing stored) when it is refused."""
        try:
            return self._submit(new)
        except RequestError as exc:
            self.metrics.refused.labels(exc.reason).inc()
            raise

    def _submit(self, new: NewRequest) -> Receipt:
        s = self.settings
        if new.channel not in CHANNELS:
            raise RequestError("未知的渠道", f"unknown channel {new.channel[:16]!r} (known: {', '.join(CHANNELS)})")
        if new.contact_pref not in CONTACT_PREFS:
            raise RequestError("未知的联系方式", f"unknown contact preference (known: {', '.join(CONTACT_PREFS)})")
        text = clean_text(new.text, s.text_max_chars)
        place = self.places.get(new.place)
        phone = clean_text(new.phone or "", 32, required=False)
        household = clean_text(new.household or "", 64, required=False)
        if phone and not _PHONE.match(phone):
            raise RequestError("电话号码格式不对", "the phone number is not a phone number", 422, "phone")
        if new.contact_pref in ("phone", "sms") and not phone:
            raise RequestError("选择电话或短信联系时请留下电话号码", "a phone or SMS contact needs a phone number",
                               422, "phone")
        photo = clean_photo(new.photo, s.photo_max_bytes) if new.photo is not None else None
        triage = self.triager.triage([text])[0]
        emergency = triage.urgency == "emergency"
        queued = not emergency and triage.confidence < s.min_confidence
        now = self._clock()
        pin = new_pin()
        with self._route_lock:
            ticket = self.store.next_ticket(s.ticket_prefix, datetime.fromtimestamp(now, self._tz).strftime("%Y%m%d"))
            if emergency:  # the staff on duty know at once, before anything else is written
                self._raise_alert(now, place.id, triage.category, ticket)
                self.metrics.emergencies.inc()
            order, merged = (None, False) if queued else self._route(
                ticket, text, place.id, triage.category, triage.urgency, new.channel, new.entered_by, now)
            request_id = self.store.add(StoredRequest(
                created_at=now, channel=new.channel, entered_by=new.entered_by, text=text, place=place.id,
                contact_pref=new.contact_pref,
                household_hash=self.identity.hash("household", household) if household else None,
                phone_hash=self.identity.hash("phone", phone) if phone else None, category=triage.category,
                urgency=triage.urgency, confidence=triage.confidence, reason=triage.reason,
                triage_state="queued" if queued else "auto", work_order_id=order, merged=merged),
                ticket=ticket, pin_hash=self.identity.pin_hash(ticket, pin), photo=photo)
        self.metrics.received.labels(new.channel).inc()
        if queued:
            self.metrics.queued.inc()
        if merged:
            self.metrics.merged.inc()
        log.info("resident request %s (%s): %s/%s, confidence %.2f -> %s", ticket, new.channel, triage.category,
                 triage.urgency, triage.confidence,
                 "queued" if queued else f"merged into {order}" if merged else f"work order {order}")
        return Receipt(ticket, pin, triage.category, triage.urgency, emergency, order, queued, merged, request_id)

    def _route(self, ticket: str, text: str, place: str, category: str, urgency: str, channel: str,
               entered_by: str, now: float) -> tuple[int, bool]:
        """Merge into the active order of the same problem, or open one: (order id, merged).
        An emergency always gets its own order."""
        if urgency != "emergency":
            window_s = self.settings.duplicate_window_h * 3600
            candidates = []
            for row in self.store.recent_with_orders(category, now - window_s):
                if self.orders.get(row["work_order_id"])["status"] in ACTIVE:
                    candidates.append((row["work_order_id"], Report(row["created_at"], row["place"], category,
                                                                    row["text"])))
            match = best_match(Report(now, place, category, text), candidates, window_s=window_s)
            if match is not None:
                self.orders.requester_note(match, "report_merged", f"resident:{ticket}",
                                           f"{ticket} ({channel}): {text}", now=now)
                return match, True
        p = self.places.get(place)
        description = f"{text}\n\n地点 Place: {p.name} ({p.id}) · 工单号 Ticket: {ticket} · 渠道 Channel: {channel}"
        actor = entered_by if channel in ("counter", "hotline") and entered_by else f"resident:{ticket}"
        order = self.orders.create(source=channel, category=category, title=text.splitlines()[0][:40],
                                   description=description, building=p.building, severity=SEVERITY[urgency],
                                   actor=actor, now=now)
        return order, False

    def confirm(self, request_id: int, category: str, urgency: str, who: Principal) -> Receipt:
        """A supervisor's triage of a queued request: its work order is opened (or merged) now."""
        if category not in TRIAGE_CATEGORIES:
            raise RequestError("未知的类别", f"unknown category (known: {', '.join(TRIAGE_CATEGORIES)})")
        if urgency not in URGENCIES:
            raise RequestError("未知的紧急程度", f"unknown urgency (known: {', '.join(URGENCIES)})")
        with self._route_lock:
            row = self.store.get(request_id)
            if row is None:
                raise RequestError("没有这条诉求", f"no request {request_id}", 404, "unknown")
            if row["triage_state"] != "queued":
                raise RequestError("这条诉求已经分派过了", "this request is not waiting for triage", 409, "state")
            now = self._clock()
            if urgency == "emergency":
                self._raise_alert(now, row["place"], category, row["ticket"])
                self.metrics.emergencies.inc()
            order, merged = self._route(row["ticket"], row["text"], row["place"], category, urgency, row["channel"],
                                        who.actor if row["channel"] in ("counter", "hotline") else "", now)
            self.store.set_triage(request_id, category=category, urgency=urgency, state="confirmed",
                                  work_order_id=order, merged=merged)
        log.info("request %s triaged by %s: %s/%s -> work order %d", row["ticket"], who.actor, category, urgency, order)
        return Receipt(row["ticket"], "", category, urgency, urgency == "emergency", order, False, merged, request_id)

    def queue(self, limit: int = 200) -> list[dict[str, Any]]:
        """The supervisors' triage queue, oldest first (no identity, no PIN)."""
        return [{k: r[k] for k in ("id", "ticket", "created_at", "channel", "text", "place", "category", "urgency",
                                   "confidence", "reason")} | {"place_name": self._place_name(r["place"])}
                for r in self.store.queued(limit)]

    # -- tracking ------------------------------------------------------------------------

    def _authorise(self, ticket: str, pin: str, client: str) -> dict[str, Any]:
        try:
            self.guard.check(ticket, client)
        except Exception:
            self.metrics.pin_failures.inc()
            self.metrics.refused.labels("pin_limited").inc()
            raise
        row = self.store.by_ticket(ticket)  # looked up whatever the prefix: the same work either way
        if row is not None and not ticket.startswith(f"{self.settings.ticket_prefix}-"):
            row = None
        if not self.identity.pin_matches(row["pin_hash"] if row else None, ticket, pin):
            self.guard.failed(ticket, client)
            self.metrics.pin_failures.inc()
            self.metrics.refused.labels("pin").inc()
            raise not_found()
        assert row is not None
        return row

    def track(self, ticket: str, pin: str, client: str) -> dict[str, Any]:
        """What the resident may see of their request: status history, staff replies (by role,
        never by name), their own additions, rating, and whether they may rate or reopen."""
        row = self._authorise(ticket, pin, client)
        return self._view(row)

    def _view(self, row: dict[str, Any]) -> dict[str, Any]:
        spec = CATEGORIES[row["category"]]
        view: dict[str, Any] = {
            "ticket": row["ticket"], "created_at": row["created_at"], "channel": row["channel"], "text": row["text"],
            "place": row["place"], "place_name": self._place_name(row["place"]), "category": row["category"],
            "category_zh": spec.label_zh, "category_en": spec.label_en, "urgency": row["urgency"],
            "emergency": row["urgency"] == "emergency",
            "emergency_numbers": list(EMERGENCY_NUMBERS) if row["urgency"] == "emergency" else [],
            "merged": row["merged"], "status": "queued" if row["triage_state"] == "queued" else "open",
            "history": [], "replies": [], "additions": self.store.additions(row["id"]),
            "rating": None if row["rating"] is None else {"stars": row["rating"], "comment": row["rating_comment"],
                                                          "at": row["rated_at"]},
            "can_rate": False, "can_reopen": False}
        if row["work_order_id"] is None:
            return view
        order = self.orders.get(row["work_order_id"])
        own = f"resident:{row['ticket']}"
        view["status"] = order["status"]
        for e in order["events"]:
            if e["actor"].startswith("resident:"):
                if e["action"] == "reopen":
                    view["history"].append({"at": e["at"], "status": e["to"], "by": "resident",
                                            "note": e["note"] if e["actor"] == own else ""})
                continue  # other residents' words are theirs
            by = self._role(e["actor"])
            if e["action"] in _STATUS_ACTIONS:
                view["history"].append({"at": e["at"], "status": e["to"], "by": by, "note": ""})
            if e["action"] in ("comment", "resolve", "reopen") and e["note"]:
                view["replies"].append({"at": e["at"], "by": by, "note": e["note"]})
        now = self._clock()
        closed = order["status"] in ("resolved", "verified")
        view["can_rate"] = closed and row["rating"] is None
        resolved_at = order["resolved_at"]
        view["can_reopen"] = closed and resolved_at is not None and now - resolved_at <= self._reopen_s
        return view

    @property
    def _reopen_s(self) -> float:
        return self.settings.reopen_days * 86400

    def _role(self, actor: str) -> str:
        if actor.startswith("hub:"):
            return "system"
        if actor.startswith("token:"):
            return "kiosk" if "kiosk" in actor else "system"
        return self._role_of(actor) or "staff"

    def _place_name(self, place_id: str) -> str:
        try:
            return self.places.get(place_id).name
        except RequestError:
            return place_id

    def add_info(self, ticket: str, pin: str, client: str, text: str = "", photo: bytes | None = None) -> dict[str, Any]:
        row = self._authorise(ticket, pin, client)
        try:
            text = clean_text(text, self.settings.text_max_chars, required=photo is None)
            cleaned: Photo | None = clean_photo(photo, self.settings.photo_max_bytes) if photo is not None else None
        except RequestError as exc:
            self.metrics.refused.labels(exc.reason).inc()
            raise
        now = self._clock()
        self.store.add_info(row["id"], text, cleaned, now)
        if row["work_order_id"] is not None:
            self.orders.requester_note(row["work_order_id"], "photo_added" if cleaned and not text else "info_added",
                                       f"resident:{ticket}", text or "(照片 photo)", now=now)
        return self._view(self.store.by_ticket(ticket) or row)

    def rate(self, ticket: str, pin: str, client: str, stars: int, comment: str = "") -> dict[str, Any]:
        row = self._authorise(ticket, pin, client)
        if not 1 <= stars <= 5:
            raise RequestError("请打 1 到 5 星", "stars must be 1 to 5", 422, "rating")
        comment = clean_text(comment, 500, required=False)
        order = self.orders.get(row["work_order_id"]) if row["work_order_id"] is not None else None
        if order is None or order["status"] not in ("resolved", "verified"):
            raise RequestError("处理完成后才能评价", "you can rate once it is resolved", 409, "rating")
        now = self._clock()
        if not self.store.rate(row["id"], stars, comment, now):
            raise RequestError("已经评价过了", "already rated", 409, "rating")
        self.orders.requester_note(order["id"], "rated", f"resident:{ticket}", f"{stars}/5 {comment}".strip(), now=now)
        return self._view(self.store.by_ticket(ticket) or row)

    def reopen(self, ticket: str, pin: str, client: str, note: str) -> dict[str, Any]:
        row = self._authorise(ticket, pin, client)
        note = clean_text(note, 500)
        if row["work_order_id"] is None:
            raise RequestError("这条诉求还没有工单", "this request has no work order yet", 409, "state")
        try:
            self.orders.requester_reopen(row["work_order_id"], f"resident:{ticket}", note, within_s=self._reopen_s,
                                         now=self._clock())
        except WorkOrderError as exc:
            raise RequestError(f"不能重新打开：已处理超过 {self.settings.reopen_days:g} 天或尚未处理完成",
                               str(exc), exc.status, "reopen") from None
        return self._view(row)

    # -- photos of work orders (volunteers' and staff's) -------------------------------

    def attach_photo_to_order(self, order_id: int, photo: bytes, who: Principal) -> int:
        """A photo on a work order (a volunteer's resolve): cleaned, kept, noted on the order; its id."""
        order = self.orders.get(order_id)
        if who.role == "volunteer" and order["assignee"] != who.name:
            raise RequestError("只能给自己认领的工单上传照片", "volunteers add photos to their own work orders only",
                               403, "forbidden")
        cleaned = clean_photo(photo, self.settings.photo_max_bytes)
        photo_id = self.store.add_order_photo(order_id, cleaned, who.actor, self._clock())
        self.orders.act(order_id, "comment", who, note=f"上传了照片 (photo {photo_id})")
        return photo_id

    def order_photos(self, order_id: int) -> list[dict[str, Any]]:
        """The photos staff see on a work order: its reporters' and its own."""
        ids = tuple(r["id"] for r in self.store.on_order(order_id))
        return self.store.photos(request_ids=ids, order_id=order_id)

    def order_requests(self, order_id: int) -> list[str]:
        """The tickets following a work order."""
        return [r["ticket"] for r in self.store.on_order(order_id)]

    # -- retention -----------------------------------------------------------------------

    def anonymise_closed(self, now: float | None = None) -> int:
        """Clear the personal fields of closed requests older than ``retention_days``."""
        now = self._clock() if now is None else now
        status: dict[int, str] = {}
        done = []
        for r in self.store.closable(now - self.settings.retention_days * 86400):
            order = r["work_order_id"]
            if order is not None and order not in status:
                try:
                    status[order] = self.orders.get(order)["status"]
                except WorkOrderError:
                    status[order] = "gone"
            if order is None or status[order] not in ACTIVE:
                done.append(r["id"])
        n = self.store.anonymise(done, now)
        if n:
            self.metrics.anonymised.inc(n)
            log.info("residents: %d closed requests anonymised", n)
        return n
