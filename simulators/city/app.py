"""The city platform's HTTP API and overview page."""

import html
import logging

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse
from pydantic import ValidationError

from contract.city import Batch, BatchAck
from simulators.city.store import CityStore

log = logging.getLogger(__name__)

MAX_BATCH_BYTES = 32 * 1024 * 1024


def create_app(store: CityStore) -> FastAPI:
    app = FastAPI(title="midbrain reference city platform (城市大脑模拟)", version="1")

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/api/v1/batches", response_model=BatchAck)
    async def post_batch(request: Request) -> BatchAck:
        body = await request.body()
        if len(body) > MAX_BATCH_BYTES:
            raise HTTPException(413, f"batch of {len(body)} bytes exceeds {MAX_BATCH_BYTES}")
        try:
            batch = Batch.model_validate_json(body)
        except ValidationError as exc:
            first = exc.errors()[0]
            reason = f"{'.'.join(map(str, first['loc'])) or 'body'}: {first['msg']}"
            log.warning("rejected batch from %s: %s", request.client, reason)
            raise HTTPException(422, reason) from exc
        return store.accept(batch)

    @app.get("/api/communities")
    def communities() -> list[dict[str, object]]:
        return store.communities()

    @app.get("/api/summaries")
    def summaries(community: str | None = None, limit: int = Query(100, ge=1, le=10_000)) -> list[dict[str, object]]:
        return store.summaries(community, limit)

    @app.get("/api/stats")
    def stats() -> dict[str, int]:
        return store.stats()

    @app.get("/", response_class=HTMLResponse)
    def overview() -> str:
        rows = "".join(
            f"<tr><td>{html.escape(str(c['community']))}</td><td>{c['summaries']}</td>"
            f"<td>{c['latest_window_end']:.0f}</td></tr>" for c in store.communities()
        )
        return ("<!doctype html><html lang='zh-CN'><meta charset='utf-8'><title>城市大脑 · 社区概览</title>"
                "<h1>城市大脑 · 社区概览 (City overview)</h1><table border=1><tr><th>社区 Community</th>"
                f"<th>汇总数 Summaries</th><th>最新窗口 Latest window</th></tr>{rows}</table></html>")

    return app
