"""The city platform's HTTP API and overview page."""

import base64
import html
import json
import logging
import time
import zlib
from pathlib import Path

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse
from pydantic import ValidationError

from contract.city import COMMUNITY_HEADER, SIGNATURE_HEADER, BatchAck, verify
from contract.fastcodec import decode_batch
from simulators.city.store import CityStore, kpis

log = logging.getLogger(__name__)

MAX_BATCH_BYTES = 32 * 1024 * 1024


def create_app(store: CityStore, community_keys: dict[str, bytes], capture: Path | None = None) -> FastAPI:
    """``community_keys``: each community's batch signing key; other communities are refused.
    ``capture``: a JSON-lines file that gets every batch request exactly as received."""
    app = FastAPI(title="midbrain reference city platform (城市大脑模拟)", version="1")
    keys = dict(community_keys)

    def record(request: Request, raw: bytes) -> None:
        if capture is None:
            return
        line = json.dumps({"at": time.time(), "method": request.method, "path": request.url.path,
                           "headers": dict(request.headers), "body_b64": base64.b64encode(raw).decode()})
        with capture.open("a") as fh:
            fh.write(line + "\n")

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    def refuse(request: Request, status: int, reason: str, community: str) -> HTTPException:
        log.warning("refused batch %s from %s (community %r): %s", request.headers.get("idempotency-key", "?"),
                    request.client.host if request.client else "?", community, reason)
        store.refused(community, reason)
        return HTTPException(status, reason)

    @app.post("/api/v1/batches", response_model=BatchAck)
    async def post_batch(request: Request) -> BatchAck:
        body = await request.body()
        record(request, body)
        community = request.headers.get(COMMUNITY_HEADER, "")
        if request.headers.get("content-encoding") == "gzip":
            inflate = zlib.decompressobj(wbits=31)
            try:  # bounded: a small gzip body must not expand without limit
                body = inflate.decompress(body, MAX_BATCH_BYTES + 1)
            except zlib.error as exc:
                raise refuse(request, 400, f"body is not valid gzip: {exc}", community) from None
            if len(body) <= MAX_BATCH_BYTES and (not inflate.eof or inflate.unused_data):
                raise refuse(request, 400, "body is not valid gzip: truncated, or bytes after its end", community)
        if len(body) > MAX_BATCH_BYTES:
            raise HTTPException(413, f"batch of {len(body)} bytes exceeds {MAX_BATCH_BYTES}")
        key = keys.get(community)
        if key is None:
            raise refuse(request, 401, f"unknown community {community!r}: no signing key is registered for it",
                         community)
        if not verify(key, body, request.headers.get(SIGNATURE_HEADER, "")):
            raise refuse(request, 401, "signature does not match the body (wrong key, or the batch was altered)",
                         community)
        try:
            key, batch_community, summaries = decode_batch(body)
        except ValidationError as exc:
            first = exc.errors()[0]
            reason = f"{'.'.join(map(str, first['loc'])) or 'body'}: {first['msg']}"
            log.warning("rejected batch from %s: %s", request.client, reason)
            raise HTTPException(422, reason) from exc
        if batch_community != community:
            raise refuse(request, 403, f"batch of community {batch_community!r} signed as {community!r}", community)
        return store.accept(key, community, summaries)

    @app.get("/api/communities")
    def communities() -> list[dict[str, object]]:
        return store.communities()

    @app.get("/api/summaries")
    def summaries(community: str | None = None, limit: int = Query(100, ge=1, le=10_000)) -> list[dict[str, object]]:
        return store.summaries(community, limit)

    @app.get("/api/refusals")
    def refusals(limit: int = Query(100, ge=1, le=10_000)) -> list[dict[str, object]]:
        """Batches refused before they were read, newest first, with the reason."""
        return store.refusals(limit)

    @app.get("/api/stats")
    def stats() -> dict[str, int]:
        return store.stats()

    @app.get("/api/communities/{community}/latest")
    def latest(community: str) -> dict[str, object]:
        """The community's latest summary and its key figures."""
        summary = store.latest(community)
        if summary is None:
            raise HTTPException(404, f"no summary from community {community!r}")
        return {"summary": summary, "kpis": kpis(summary)}

    @app.get("/api/communities/{community}/series")
    def series(community: str, since: float = 0.0, limit: int = Query(1000, ge=1, le=100_000)) -> list[dict[str, object]]:
        """Key figures per summary window, oldest first."""
        return store.series(community, since, limit)

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
        return ("<!doctype html><html lang='zh-CN'><meta charset='utf-8'><title>城市大脑 · 社区概览</title>"
                "<style>body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse}"
                "td,th{border:1px solid #999;padding:.3em .6em}</style>"
                f"<h1>城市大脑 · 社区概览 (City overview)</h1><p>{len(rows)} 个社区 communities</p>"
                "<table id='communities'><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"
                + "".join(rows) + "</table></html>")

    return app
