"""Request ids, one JSON log line per event, and Prometheus metrics: one `install_observability` per service.

The gateway gives every request an id (or keeps a well-formed `X-Request-ID` the caller sent),
echoes it in the response header, and passes it on to both services, whose middleware picks
it up the same way; every log line written while the request runs carries it. Metrics live in
a registry per app, so an app made twice in one process (tests) never collides with itself.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable, Iterable

from fastapi import FastAPI
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lookalike.log_lines import REQUEST_ID

REQUEST_ID_HEADER = "X-Request-ID"
# Ids from outside are kept only when short and plain, so they are safe in headers and logs.
_WELL_FORMED_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# Probes and scrapes would drown the request log; they are logged at DEBUG.
_QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})

log = logging.getLogger("lookalike.requests")


def request_id_header() -> dict[str, str]:
    """The header that carries the current request id on to another service."""
    request_id = REQUEST_ID.get()
    return {REQUEST_ID_HEADER: request_id} if request_id else {}


def request_id_of(request: Request) -> str | None:
    """The id the middleware gave this request, readable even where its context has ended.

    Starlette answers an unhandled exception outside every user middleware, so the 500
    handler finds the id here rather than in the context variable.
    """
    return getattr(request.state, "request_id", None)


def _accepted_request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            text: str = value.decode("latin-1")
            if _WELL_FORMED_ID.fullmatch(text):
                return text
    return uuid.uuid4().hex


class _FunctionGauges(Collector):
    """A gauge with one label whose values are read at scrape time, e.g. items per category."""

    def __init__(self, name: str, documentation: str, label: str, read: Callable[[], dict[str, float]]) -> None:
        self.name, self.documentation, self.label, self.read = name, documentation, label, read

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(self.name, self.documentation, labels=[self.label])
        for value_of_label, value in sorted(self.read().items()):
            family.add_metric([value_of_label], value)
        yield family


CONNECTIONS_REFUSED = "lookalike.connections_refused"
"""The lifespan-state key under which `Metrics.connections_refused` reaches the HTTP protocol."""


class Metrics:
    """One app's Prometheus registry: request counts and latencies, plus what its service adds."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("http_requests_total", "Requests answered, by route and status.",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("http_request_duration_seconds", "Time to answer a request, by route.",
                                 ["method", "route"], registry=self.registry,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
        self.connections_refused = Counter(
            "http_connections_refused_total", "Connections answered or closed by the HTTP protocol before any route: "
            "`head_timeout`, `headers_too_large`, `too_many_connections`.", ["reason"], registry=self.registry)

    def gauge(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        """A gauge read at scrape time, e.g. the classifier's queue length."""
        Gauge(name, documentation, registry=self.registry).set_function(read)

    def labelled_gauge(self, name: str, documentation: str, label: str,
                       read: Callable[[], dict[str, float]]) -> None:
        self.registry.register(_FunctionGauges(name, documentation, label, read))

    def histogram(self, name: str, documentation: str, buckets: Iterable[float]) -> Histogram:
        return Histogram(name, documentation, registry=self.registry, buckets=tuple(buckets))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class ObservabilityMiddleware:
    """Pure ASGI, so the request id's context reaches the route and everything it awaits."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _accepted_request_id(scope)
        scope.setdefault("state", {})["request_id"] = request_id  # `request.state.request_id`
        token = REQUEST_ID.set(request_id)
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before answering

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []),
                                      (REQUEST_ID_HEADER.lower().encode(), request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", None) or "unmatched"  # a template: ids never become labels
            self.metrics.requests.labels(scope["method"], route, str(status)).inc()
            self.metrics.latency.labels(scope["method"], route).observe(elapsed)
            log.log(logging.DEBUG if scope["path"] in _QUIET_PATHS else logging.INFO, "request",
                    extra={"method": scope["method"], "path": scope["path"], "route": route, "status": status,
                           "duration_ms": round(elapsed * 1000, 2)})
            REQUEST_ID.reset(token)


MetricsGuard = Callable[[Request], None]
"""Refuses a scrape (raises an `ApiError`) that may not read `/metrics`, e.g. one without the operator token."""


def install_observability(app: FastAPI, guard: MetricsGuard | None = None) -> Metrics:
    """Request ids, request logs and `/metrics` on `app`; returns the registry for service metrics.

    `guard`, where given, runs before every scrape: the gateway's public port asks for the operator token.
    """
    metrics = Metrics()
    app.state.metrics = metrics
    app.add_middleware(ObservabilityMiddleware, metrics=metrics)

    async def serve_metrics(request: Request) -> Response:
        if guard is not None:
            guard(request)
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    app.add_api_route("/metrics", serve_metrics, methods=["GET"], include_in_schema=False)
    return metrics
