"""The city platform's HTTP API and overview page."""

import asyncio
import base64
import hashlib
import hmac
import html
import json
import logging
import time
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, Header, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from contract.city import (
    COMMUNITY_HEADER,
    DOWNLINK_ACKS_PATH,
    DOWNLINK_MAX_WAIT_S,
    DOWNLINK_PATH,
    REQUEST_SKEW_S,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    BatchAck,
    downlink_request,
    verify,
)
from contract.messages import MAX_PERIOD_S
from contract.ngsild import CONTENT_TYPE as NGSI_CONTENT_TYPE
from contract.ngsild import UPSERT_PATH, check
from contract.downlink import (
    AckBatch,
    ConfigChange,
    DownlinkItem,
    ModelUpdate,
    Notice,
    sign_item,
)
from servicekit.http import BodyLimit
from simulators.city.receiver import MAX_BATCH_BYTES, BatchReceiver, BatchRefused
from simulators.city.store import CityStore, kpis
from servicekit.openapi import REFUSAL_RESPONSES
from simulators.city import metrics

log = logging.getLogger(__name__)

SQLITE_INT_MAX = 2**63 - 1  # a larger number in a query is refused (422), not an OverflowError (500)
LARGE_BATCH_BYTES = 8 * 1024  # as received (gzip: a backlog batch of 500 summaries is about 20 KiB), taken in a worker thread



class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Literal["window_anomaly", "water_leak", "elevator_fault"] = "window_anomaly"
    version: str = Field(min_length=1, max_length=32)
    manifest: dict[str, Any]
    file_b64: str = Field(max_length=1024 * 1024)


class IssueRequest(BaseModel):
    """What an operator issues: a notice, a configuration change, or a model (its file)."""

    model_config = ConfigDict(extra="forbid")
    community: str
    notice: Notice | None = None
    config: ConfigChange | None = None
    model: _Model | None = None
    expires_in_s: float | None = Field(default=None, gt=0)


def create_app(store: CityStore, community_keys: dict[str, bytes], capture: Path | None = None,
               signing_key: str = "", operator_token: str = "") -> FastAPI:
    """``community_keys``: each community's batch signing key; other communities are refused.
    ``capture``: a JSON-lines file that gets every request a community's bridge makes
    (batches, NGSI-LD upserts, downlink requests and answers) exactly as received.
    ``signing_key``: the city's Ed25519 key for items sent down; ``operator_token``: who may
    issue them."""
    app = FastAPI(title="midbrain reference city platform (城市大脑模拟)", version="1")
    app.add_middleware(BodyLimit, default_bytes=1 << 20, route_bytes={"/api/v1/batches": 8 << 20, UPSERT_PATH: 8 << 20,
                       "/api/v1/downlink": 4 << 20}, inflated_bytes=MAX_BATCH_BYTES)  # 413 before reading a body
    keys = dict(community_keys)
    receiver = BatchReceiver(store, keys)
    app.router.responses.update(REFUSAL_RESPONSES)  # before any route: its 422s carry a sentence, or FastAPI's list

    def record(request: Request, raw: bytes) -> None:
        if capture is None:
            return
        target = f"{request.url.path}?{request.url.query}" if request.url.query else request.url.path
        line = json.dumps({"at": time.time(), "method": request.method, "path": target,
                           "headers": dict(request.headers), "body_b64": base64.b64encode(raw).decode()})
        with capture.open("a") as fh:
            fh.write(line + "\n")

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    def refuse(request: Request, status: int, reason: str, community: str, code: str = "signature") -> HTTPException:
        request.state.refusal = code  # what the refusal counts go by
        log.warning("refused request %s from %s (community %r): %s", request.headers.get("idempotency-key", "?"),
                    request.client.host if request.client else "?", community, reason)
        store.refused(community, reason)
        return HTTPException(status, reason)

    @app.post("/api/v1/batches", response_model=BatchAck)
    async def post_batch(request: Request) -> BatchAck:
        body = await request.body()
        record(request, body)
        source = f"{request.client.host if request.client else '?'} (batch {request.headers.get('idempotency-key', '?')})"
        try:
            args = (request.headers.get(COMMUNITY_HEADER, ""), request.headers.get(SIGNATURE_HEADER, ""),
                    request.headers.get("content-encoding", ""), body, source)
            if len(body) < LARGE_BATCH_BYTES:  # a routine batch: sub-millisecond work, done here
                return receiver.receive(*args)
            # A backlog's large batch, in a worker thread: SQLite lets go of the GIL while it
            # writes, so one is stored while the next is read and checked.
            return await asyncio.to_thread(receiver.receive, *args)
        except BatchRefused as exc:
            request.state.refusal = exc.code
            raise HTTPException(exc.status, exc.reason) from None

    # -- NGSI-LD (a context broker's batch upsert and entity query, for bridges that send
    # Smart Data Model entities: bridge.transport = "ngsi-ld") -------------------------------

    @app.post(UPSERT_PATH)
    async def ngsi_upsert(request: Request) -> JSONResponse:
        raw = await request.body()
        record(request, raw)
        if not request.headers.get("content-type", "").startswith(NGSI_CONTENT_TYPE):
            raise HTTPException(415, f"entities with an @context come as {NGSI_CONTENT_TYPE}")
        community = request.headers.get(COMMUNITY_HEADER, "")
        try:
            body = receiver.open(community, request.headers.get(SIGNATURE_HEADER, ""),
                                 request.headers.get("content-encoding", ""), raw, f"NGSI-LD upsert of {community}")
        except BatchRefused as exc:
            request.state.refusal = exc.code
            raise HTTPException(exc.status, exc.reason) from None
        try:
            items = json.loads(body)
        except ValueError as exc:
            raise HTTPException(400, f"body is not JSON: {exc}") from None
        if not isinstance(items, list) or not all(isinstance(e, dict) for e in items):
            raise HTTPException(400, "an upsert body is a JSON array of entities")
        good, errors, foreign = [], [], 0
        for e in items:
            problems = check(e)
            area = e.get("areaServed")
            if not str(e.get("id", "")).startswith(f"urn:ngsi-ld:{e.get('type')}:{community}:") or (
                    isinstance(area, dict) and area.get("value") != community):
                problems.append(f"entity of another community than {community!r}")
                foreign += 1
            if problems:
                errors.append({"entityId": e.get("id"), "error": {
                    "type": "https://uri.etsi.org/ngsi-ld/errors/BadRequestData", "title": "entity does not fit "
                    "its Smart Data Model", "detail": "; ".join(problems)[:1000]}})
            else:
                good.append(e)
        store.upsert_entities(community, good)
        if errors:
            log.warning("NGSI-LD upsert from %s: %d entities refused: %s", community, len(errors),
                        errors[0]["error"]["detail"])
            store.refused_entities(community, f"NGSI-LD upsert: {len(errors)} of {len(items)} entities refused, "
                                   f"{foreign} of other communities: {errors[0]['error']['detail']}",
                                   len(errors), foreign)
            store.count_refusal(UPSERT_PATH, 207, "foreign_entities" if foreign else "entities_not_fitting")
            return JSONResponse({"success": [e["id"] for e in good], "errors": errors}, status_code=207)
        return JSONResponse([e["id"] for e in good], status_code=201)

    @app.get("/ngsi-ld/v1/entities")
    def ngsi_entities(type: str | None = None, idPrefix: str | None = None,  # noqa: A002, N803 (NGSI-LD names)
                      limit: int = Query(100, ge=1, le=1000)) -> list[dict[str, object]]:
        """Entities held, by type (and, not standard, an id prefix such as urn:ngsi-ld:AirQualityObserved:c1:)."""
        return store.entities(type, idPrefix, limit)

    # -- downlink ---------------------------------------------------------------------------

    @app.post("/api/v1/downlink", status_code=201)
    def issue(req: IssueRequest, authorization: str = Header("")) -> dict[str, object]:
        """Issue one signed item to a community (operators only)."""
        if not operator_token or not hmac.compare_digest(authorization.encode(), f"Bearer {operator_token}".encode()):
            raise HTTPException(401, "operator token required (city.operator_token)")
        if not signing_key:
            raise HTTPException(409, "city.signing_key is not set: nothing can be signed")
        if req.community not in keys:
            raise HTTPException(404, f"unknown community {req.community!r}")
        given = [b for b in (req.notice, req.config, req.model) if b is not None]
        if len(given) != 1:
            raise HTTPException(422, "give exactly one of notice, config, model")
        blob = b""
        body: Notice | ConfigChange | ModelUpdate
        if req.model is not None:
            try:
                blob = base64.b64decode(req.model.file_b64, validate=True)
            except ValueError:
                raise HTTPException(422, "model.file_b64 is not base64") from None
            try:
                body = ModelUpdate(name=req.model.name, version=req.model.version,
                                   sha256=hashlib.sha256(blob).hexdigest(), size=len(blob), manifest=req.model.manifest)
            except ValidationError as exc:
                raise HTTPException(422, str(exc.errors()[0]["msg"])) from None
        else:
            body = given[0]  # type: ignore[assignment]
        now = time.time()
        seq = store.next_seq(req.community)
        item = DownlinkItem(seq=seq, community=req.community, issued_at=now, body=body,
                            expires_at=now + req.expires_in_s if req.expires_in_s else None)
        signed = sign_item(signing_key, item, blob)
        store.issue(req.community, seq, body.kind, json.dumps(signed.model_dump(), separators=(",", ":")))
        log.info("issued %s %d to %s", body.kind, seq, req.community)
        return {"community": req.community, "seq": seq, "kind": body.kind}

    def community_of(request: Request, signature: str, raw: bytes) -> str:
        community = request.headers.get(COMMUNITY_HEADER, "")
        key = keys.get(community)
        if key is None or not verify(key, raw, signature):
            raise refuse(request, 401, "unknown community, or the request's signature does not match", community)
        return community

    @app.get(DOWNLINK_PATH)
    async def fetch_downlink(request: Request, after: int = Query(0, ge=0, le=SQLITE_INT_MAX),
                             limit: int = Query(50, ge=1, le=500),
                             wait: float = Query(0.0, ge=0, le=DOWNLINK_MAX_WAIT_S)) -> dict[str, object]:
        """A community's items after ``after``, signed by the city; the request itself is
        signed with the community's key (``contract.city.downlink_request``). With ``wait``,
        a request that finds nothing is held open up to that many seconds and answered as
        soon as an item is issued (long polling)."""
        community = request.headers.get(COMMUNITY_HEADER, "")
        try:
            ts = float(request.headers.get(TIMESTAMP_HEADER, ""))
        except ValueError:
            raise refuse(request, 401, f"{TIMESTAMP_HEADER} missing", community, "timestamp") from None
        if not abs(time.time() - ts) <= REQUEST_SKEW_S:  # NaN too: it would never grow old
            raise refuse(request, 401, f"request time {ts:.0f} is more than {REQUEST_SKEW_S:.0f} s from the city's",
                         community, "timestamp")
        key = keys.get(community)
        if key is None or not hmac.compare_digest(downlink_request(key, community, after, ts),
                                                  request.headers.get(SIGNATURE_HEADER, "")):
            raise refuse(request, 401, "unknown community, or the request's signature does not match", community)
        record(request, b"")
        loop = asyncio.get_running_loop()
        until = loop.time() + wait
        stopping: asyncio.Event | None = getattr(app.state, "http_stopping", None)
        # The database in a worker thread (a backlog's batch may hold the store meanwhile);
        # while held, the last item number is looked at every quarter second, in memory.
        items = await asyncio.to_thread(store.downlink_after, community, after, limit)
        while not items and loop.time() < until and not (stopping is not None and stopping.is_set()):
            await asyncio.sleep(min(0.25, until - loop.time()))
            if store.last_issued(community) > after:
                items = await asyncio.to_thread(store.downlink_after, community, after, limit)
        return {"items": [json.loads(s) for s in items]}

    @app.post(DOWNLINK_ACKS_PATH)
    async def downlink_acks(request: Request) -> dict[str, int]:
        """A community's answers to its items (applied, or refused and why), signed like batches."""
        raw = await request.body()
        record(request, raw)
        community = community_of(request, request.headers.get(SIGNATURE_HEADER, ""), raw)
        try:
            batch = AckBatch.model_validate_json(raw)
        except ValidationError as exc:
            raise HTTPException(422, str(exc.errors()[0]["msg"])) from None
        if batch.community != community:
            raise refuse(request, 403, f"answers of community {batch.community!r} signed as {community!r}", community,
                         "community_mismatch")
        known = 0
        for ack in batch.acks:
            known += store.answered(community, ack.seq, ack.status, ack.reason, ack.at)
            if ack.status == "refused":
                log.warning("community %s refused item %d: %s", community, ack.seq, ack.reason)
        return {"recorded": known}

    @app.get("/api/downlink")
    def downlink_list(community: str | None = None, limit: int = Query(100, ge=1, le=10_000)) -> list[dict[str, object]]:
        """Items issued, newest first, with each community's answer."""
        return store.downlink(community, limit)

    @app.get("/api/communities")
    def communities() -> list[dict[str, object]]:
        return store.communities()

    @app.get("/api/summaries")
    def summaries(community: str | None = None, limit: int = Query(100, ge=1, le=10_000),
                  period: int | None = Query(None, ge=0, le=MAX_PERIOD_S)) -> list[dict[str, object]]:
        """Newest first; ``period``: 0 for interval windows only, or a roll-up's length in seconds."""
        return store.summaries(community, limit, period)

    @app.get("/api/refusals")
    def refusals(limit: int = Query(100, ge=1, le=10_000)) -> list[dict[str, object]]:
        """Batches refused (signature, encoding, another community's summaries), newest first, with the reason."""
        return store.refusals(limit)

    @app.get("/api/stats")
    def stats() -> dict[str, int]:
        return store.stats()

    @app.get("/api/communities/{community}/latest")
    def latest(community: str, period: int = Query(0, ge=0, le=MAX_PERIOD_S)) -> dict[str, object]:
        """The community's latest summary and its key figures (``period``: a roll-up's, e.g. 3600)."""
        summary = store.latest(community, period)
        if summary is None:
            raise HTTPException(404, f"no summary from community {community!r}"
                                     + (f" with period {period} s" if period else ""))
        return {"summary": summary, "kpis": kpis(summary)}

    @app.get("/api/communities/{community}/series")
    def series(community: str, since: float = 0.0, limit: int = Query(1000, ge=1, le=100_000),
               period: int = Query(0, ge=0, le=MAX_PERIOD_S)) -> list[dict[str, object]]:
        """Key figures per summary window, oldest first (``period``: a roll-up's windows, e.g. 3600)."""
        return store.series(community, since, limit, period)

    @app.get("/", response_class=HTMLResponse)
    def overview() -> str:
        """城市大脑 · 社区概览: every community's latest key figures, server-rendered."""
        rows = []
        for c in store.communities():
            summary = store.latest(str(c["community"]))
            k = kpis(summary) if summary else {}
            share = k.get("online_share")
            cells = [html.escape(str(c["community"])), str(c["summaries"]),
                     time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(c["latest_window_end"]))),
                     f"{share:.1%}" if isinstance(share, float) else "–", str(k.get("alerts", "–")),
                     str(k.get("critical_alerts", "–")), str(k.get("work_orders_overdue", "–")),
                     str(k.get("requests", "–")), str(k.get("suppressed", "–"))]
            rows.append("<tr>" + "".join(f"<td>{v}</td>" for v in cells) + "</tr>")
        head = ["社区 Community", "汇总数 Summaries", "最新窗口 Latest window", "设备在线率 Online",
                "告警 Alerts", "严重告警 Critical", "超时工单 Overdue orders", "居民诉求 Requests",
                "小样本抑制 Suppressed"]
        status_zh = {"issued": "已下发 issued", "applied": "已执行 applied", "refused": "被拒绝 refused"}
        down = "".join(
            "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in (
                d["community"], d["seq"], d["kind"], d["summary"], status_zh.get(str(d["status"]), d["status"]),
                d["reason"])) + "</tr>" for d in store.downlink(None, 50))
        return ("<!doctype html><html lang='zh-CN'><meta charset='utf-8'><title>城市大脑 · 社区概览</title>"
                "<style>body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse}"
                "td,th{border:1px solid #999;padding:.3em .6em}</style>"
                f"<h1>城市大脑 · 社区概览 (City overview)</h1><p>{len(rows)} 个社区 communities</p>"
                "<table id='communities'><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"
                + "".join(rows) + "</table>"
                "<h2>下行指令 Downlink</h2><table id='downlink'><tr><th>社区 Community</th><th>序号 Seq</th>"
                "<th>类型 Kind</th><th>内容 What</th><th>状态 Status</th><th>原因 Reason</th></tr>" + down
                + "</table></html>")

    metrics.install(app, store)  # last: its middleware must wrap everything that may refuse a request
    return app
