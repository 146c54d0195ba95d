"""Serve an ASGI app with uvicorn inside our own task group and signal handling."""

import asyncio
import contextlib
import socket
from collections.abc import Iterator

import uvicorn


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
