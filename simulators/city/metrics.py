"""The city's refusals, counted: every 4xx answer but 404 (a signature that does not hold,
a body too large, a query the schema refuses, a batch carrying another community's
summaries), by route, status and a short reason, plus the store's totals.

Kept in the store, so they survive a restart; shown as Prometheus metrics at ``/metrics``
and as JSON at ``/api/refusals/counts``. A handler names its reason by setting
``request.state.refusal`` (a fixed, short name: the label must not grow with the input);
otherwise the reason is the status's own name ("content_too_large")."""

import asyncio
import logging
from collections.abc import Iterator
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from servicekit.openapi import validation_refusal
from simulators.city.store import CityStore

log = logging.getLogger(__name__)

UNKNOWN_ROUTE = "(unknown route)"
_GAUGES = {"summaries", "batches"}  # the rest of store.stats() only ever grows


def status_reason(status: int) -> str:
    """A status's own name as a label: 413 -> "content_too_large"."""
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return f"http_{status}"


class RefusalCounter:
    """ASGI middleware: counts each 4xx answer (404 aside) in the store. It must wrap
    everything that can refuse a request (a body-size limit too), so it is added last."""

    def __init__(self, app: ASGIApp, store: CityStore, routes: FastAPI) -> None:
        self.app = app
        self.store = store
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def counted(message: Message) -> None:
            if message["type"] == "http.response.start" and 400 <= message["status"] < 500 \
                    and message["status"] != 404:
                status = int(message["status"])
                reason = scope.get("state", {}).get("refusal") or status_reason(status)
                route = self._route(scope)
                log.info("refused %s %s: %d %s", scope.get("method"), route, status, reason)
                await asyncio.to_thread(self.store.count_refusal, route, status, reason)
            await send(message)

        await self.app(scope, receive, counted)

    def _route(self, scope: Scope) -> str:
        """The route's template (never the path itself: labels must not grow with input)."""
        route = scope.get("route")
        if route is None:  # refused before routing (a body-size limit): the route it was for
            route = next((r for r in self.routes.routes
                          if getattr(r, "path_regex", None) and r.path_regex.match(scope["path"])), None)
        return str(getattr(route, "path", UNKNOWN_ROUTE))


class _StoreCollector(Collector):
    def __init__(self, store: CityStore) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        for name, value in self.store.stats().items():
            family = GaugeMetricFamily if name in _GAUGES else CounterMetricFamily
            yield family(f"midbrain_city_{name}", f"City store: {name.replace('_', ' ')}", value=value)
        refusals = CounterMetricFamily("midbrain_city_refusals", "Requests refused (4xx but 404), by route, status "
                                       "and reason", labels=["route", "status", "reason"])
        for row in self.store.refusal_counts():
            refusals.add_metric([str(row["route"]), str(row["status"]), str(row["reason"])], float(row["count"]))
        yield refusals


def install(app: FastAPI, store: CityStore) -> None:
    """Count the app's refusals and serve the counts."""
    registry = CollectorRegistry()
    registry.register(_StoreCollector(store))

    async def invalid_request(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = exc.errors()
        request.state.refusal = str(errors[0].get("type", "invalid")) if errors else "invalid"
        return validation_refusal(exc)

    app.add_exception_handler(RequestValidationError, invalid_request)

    @app.get("/metrics", response_class=Response)
    def metrics() -> Response:
        """Prometheus metrics: the store's totals and the refusals by route, status and reason."""
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/api/refusals/counts")
    def refusal_counts() -> list[dict[str, object]]:
        """Requests refused (4xx but 404) by route, status and reason, since the city began."""
        return store.refusal_counts()

    app.add_middleware(RefusalCounter, store=store, routes=app)  # type: ignore[arg-type]
