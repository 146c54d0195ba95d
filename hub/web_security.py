"""What every hub response says about itself, and which browser requests it refuses.

``SecurityHeaders`` adds a Content-Security-Policy with no inline script (the staff pages load
their scripts and styles from /static), frame-ancestors 'none', Referrer-Policy and
X-Content-Type-Options. ``SameOrigin`` refuses a state-changing request whose Origin (or,
without one, Referer) names another site, port included: SameSite=Strict cookies are still
sent from another port of the same host, which is the same *site*. A request that carries a
bearer token is not a browser's ambient credential and is let through; one with neither
header is a non-browser client (browsers send Origin on every POST, PUT and DELETE).
"""

import json
import logging
from typing import Any
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry
from prometheus_client import Counter as PromCounter

log = logging.getLogger(__name__)

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
_HEADERS = [(b"content-security-policy", CSP.encode()), (b"x-frame-options", b"DENY"),
            (b"referrer-policy", b"same-origin"), (b"x-content-type-options", b"nosniff")]
_SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


class SecurityHeaders:
    """ASGI middleware: the headers above on every response (``exempt`` paths get no CSP: the
    development-only API docs, which load Swagger UI from a CDN)."""

    def __init__(self, app: Any, *, exempt: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.exempt = exempt

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = _HEADERS[1:] if scope["path"] in self.exempt else _HEADERS

        async def with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, with_headers)


class SameOrigin:
    """ASGI middleware: 403 for a state-changing browser request from another origin (CSRF)."""

    def __init__(self, app: Any, *, registry: CollectorRegistry) -> None:
        self.app = app
        self.refused = PromCounter("midbrain_hub_cross_origin_refused", "State-changing requests refused "
                                   "because their Origin or Referer named another site (CSRF)", registry=registry)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] in _SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}
        source = headers.get(b"origin") or headers.get(b"referer")
        if source is None or headers.get(b"authorization", "")[:7].lower() == "bearer ":
            await self.app(scope, receive, send)
            return
        host = headers.get(b"host", "")
        if source != "null" and urlsplit(source).netloc.lower() == host.lower():
            await self.app(scope, receive, send)
            return
        self.refused.inc()
        client = scope.get("client") or ("?", 0)
        log.warning("refused %s %s from %s: origin %r is not this hub (%r)", scope["method"], scope["path"],
                    client[0], source[:200], host[:200])
        body = json.dumps({"detail": "a request from another site is not accepted here (不接受来自其他站点的请求)"},
                          ensure_ascii=False).encode()
        await send({"type": "http.response.start", "status": 403,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
