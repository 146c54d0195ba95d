"""Serve an ASGI app with uvicorn inside our own task group and signal handling, and refuse
request bodies larger than a route allows (``BodyLimit``)."""

import asyncio
import contextlib
import json
import logging
import socket
import zlib
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any

import uvicorn
from prometheus_client import CollectorRegistry
from prometheus_client import Counter as PromCounter
from starlette.exceptions import HTTPException

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    """uvicorn without its own signal capture: the service owns SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class HttpServer:
    """Bind first (so the port is known and errors surface early), then serve until stopped."""

    def __init__(self, app: object, host: str, port: int, *, ssl_certfile: str | None = None,
                 ssl_keyfile: str | None = None) -> None:
        # proto=IPPROTO_TCP, not the default 0: asyncio sets TCP_NODELAY only on connections
        # whose socket says TCP, and without it every response written in two parts waited
        # for the client's delayed ACK (python benchmarks/http_post_latency.py).
        self._sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM,
                                   socket.IPPROTO_TCP)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self.host = host
        self.port = self._sock.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                                ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile,
                                timeout_graceful_shutdown=5)
        self._server = _Server(config)
        # Set by stop(): long-lived responses (server-sent events) end on it instead of holding
        # the graceful shutdown for its whole timeout. An app finds it as app.state.http_stopping.
        self.stopping = asyncio.Event()
        state = getattr(app, "state", None)
        if state is not None:
            state.http_stopping = self.stopping

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def serve(self) -> None:
        await self._server.serve(sockets=[self._sock])

    def stop(self) -> None:
        self.stopping.set()
        self._server.should_exit = True

    async def started(self) -> None:
        while not self._server.started:
            await asyncio.sleep(0.02)


class BodyTooLarge(HTTPException):
    """A request body past its route's limit: a 413 that Starlette and FastAPI pass through
    their own error handling (they wrap other errors raised while a body is read in a 400)."""

    def __init__(self, limit: int, inflated: bool = False) -> None:
        what = "after gzip inflation " if inflated else ""
        super().__init__(413, f"request body too large: at most {limit} bytes {what}on this route "
                              f"(请求内容过大：此处最多 {limit} 字节)")


class BodyLimit:
    """ASGI middleware: refuse a request body larger than its route allows, before reading it.

    A declared ``Content-Length`` over the limit is answered at once, the app never called;
    a body without one (chunked) is counted as it streams, and a gzip body
    (``Content-Encoding: gzip``) is also counted as it inflates, in bounded steps, so a small
    body cannot expand without limit. The app sees the bytes exactly as sent. A refusal is a
    413 with a message in Chinese and English, logged and counted in ``refused`` (and in a
    Prometheus counter when ``registry`` is given). Starlette's own RequestBodyLimitMiddleware
    counts a stream too, but calls the app before refusing a declared length, answers in
    plain text, counts nothing and does not bound inflation.

    ``route_bytes`` maps exact paths to their limits; every other path gets ``default_bytes``.
    ``inflated_bytes`` bounds a gzip body's inflated size on every route.
    """

    def __init__(self, app: Any, *, default_bytes: int = 64 * 1024, route_bytes: Mapping[str, int] | None = None,
                 inflated_bytes: int = 32 * 1024 * 1024, registry: CollectorRegistry | None = None) -> None:
        self.app = app
        self.default_bytes = default_bytes
        self.route_bytes = dict(route_bytes or {})
        self.inflated_bytes = inflated_bytes
        self.refused: Counter[str] = Counter()
        self._counter = PromCounter("midbrain_http_bodies_refused", "Request bodies refused as too large "
                                    "(413), by how they were caught", ["reason"],
                                    registry=registry if registry is not None else CollectorRegistry())

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.route_bytes.get(scope["path"], self.default_bytes)
        headers = {k.lower(): v for k, v in scope.get("headers", ()) if k.lower() in _BODY_HEADERS}
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await self._respond(send, self._refuse(scope, "content_length", limit))
            return
        inflate = zlib.decompressobj(wbits=31) if headers.get(b"content-encoding", b"").strip() == b"gzip" else None
        received = inflated = 0
        responded = False

        async def counted_receive() -> dict[str, Any]:
            nonlocal received, inflated, inflate
            message = await receive()
            if message["type"] != "http.request":
                return message
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > limit:
                raise self._refuse(scope, "streamed", limit)
            try:
                while chunk and inflate is not None and not inflate.eof:  # bounded steps; keep only the count
                    inflated += len(inflate.decompress(chunk, 64 * 1024))
                    chunk = inflate.unconsumed_tail
                    if inflated > self.inflated_bytes:
                        raise self._refuse(scope, "inflated", self.inflated_bytes)
            except zlib.error:
                inflate = None  # not gzip after all: the app says so in its own words
            return message

        async def tracked_send(message: dict[str, Any]) -> None:
            nonlocal responded
            responded = responded or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except BodyTooLarge as exc:  # an app that is not Starlette's: answer for it
            if responded:
                raise
            await self._respond(send, exc)

    def _refuse(self, scope: dict[str, Any], reason: str, limit: int) -> BodyTooLarge:
        self.refused[reason] += 1
        self._counter.labels(reason).inc()
        client = scope.get("client") or ("?", 0)
        log.warning("refused a request body over %d bytes (%s) for %s %s from %s", limit, reason,
                    scope.get("method"), scope.get("path"), client[0])
        return BodyTooLarge(limit, inflated=reason == "inflated")

    @staticmethod
    async def _respond(send: Any, exc: BodyTooLarge) -> None:
        body = json.dumps({"detail": exc.detail}, ensure_ascii=False).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


_BODY_HEADERS = (b"content-length", b"content-encoding")
