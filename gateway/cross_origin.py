"""Which other sites' pages may call the API from a browser: GATEWAY_ALLOWED_ORIGINS, exact origins.

A page on a listed origin (the `<lookalike-search>` widget on a store's own site) gets CORS headers
naming that origin, never `*`, and no `Access-Control-Allow-Credentials`: the widget sends no
cookies. Preflights are answered here, with the methods and headers the API takes. A page on any
other site gets no CORS headers at all, so its browser keeps the answer from it; it is counted on
/metrics. A request from the gateway's own page is same-origin and needs none of this.

The widget's own code is public (`PUBLIC_PATHS`): any page may load it, so that on a site not on
the list it can still tell the shopper that photo search is not available there, instead of hanging.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final
from urllib.parse import urlsplit

from prometheus_client import Counter
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lookalike.errors import OriginNotAllowed
from lookalike.observability import Metrics
from lookalike.service import error_response

ALLOWED_METHODS: Final = "GET, POST, DELETE"
ALLOWED_HEADERS: Final = "Content-Type, X-Request-ID, X-Session-ID"
EXPOSED_HEADERS: Final = "X-Request-ID"
PREFLIGHT_MAX_AGE_S: Final = 600
PUBLIC_PATHS: Final = ("/widget.js", "/widget/")
"""The widget's scripts: `/widget.js` itself, and what it loads from under `/widget/`."""

_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


def exact_origin(text: str) -> str:
    """`text` as a browser writes it in the Origin header (`https://shop.example`, `http://127.0.0.2:8080`).

    ValueError, saying how to write one, for anything that is not scheme://host[:port]: `*`, a path,
    a missing scheme. A default port is dropped (a browser never sends `:443` for https).
    """
    given = text.strip()
    if given == "*":
        raise ValueError("`*` is not allowed: list each site exactly, e.g. https://shop.example")
    parts = urlsplit(given)
    try:
        port = parts.port
    except ValueError as bad_port:
        raise ValueError(f"{given!r} has a port that is not a number") from bad_port
    if (parts.scheme not in _DEFAULT_PORTS or not parts.hostname or parts.path not in ("", "/") or parts.query
            or parts.fragment or parts.username or parts.password):
        raise ValueError(f"{given!r} is not an origin: write scheme://host[:port], e.g. https://shop.example, "
                         "with no path")
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    return f"{parts.scheme}://{host}" + ("" if port in (None, _DEFAULT_PORTS[parts.scheme]) else f":{port}")


def is_public(path: str) -> bool:
    return path == PUBLIC_PATHS[0] or path.startswith(PUBLIC_PATHS[1])


class RefusedOrigins:
    """The /metrics counter of browser requests from sites not on the list, by `preflight` or `request`."""

    def __init__(self, metrics: Metrics) -> None:
        self.counter = Counter("http_cross_origin_refused_total", "Browser requests from a site not in "
                               "GATEWAY_ALLOWED_ORIGINS, answered with no CORS headers: `preflight` or `request`.",
                               ["kind"], registry=metrics.registry)


class CrossOrigin:
    """Pure ASGI, outside the routes: it answers preflights itself and adds headers to every other answer."""

    def __init__(self, app: ASGIApp, allowed: Iterable[str], refused: RefusedOrigins) -> None:
        self.app = app
        self.allowed = frozenset(allowed)
        self.refused = refused.counter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        preflight = scope["method"] == "OPTIONS" and "access-control-request-method" in headers
        if is_public(scope["path"]):
            if preflight:
                await self._answer_preflight(send, "*", "GET")
            else:
                await self.app(scope, receive, _adding(send, {"Access-Control-Allow-Origin": "*"}))
            return
        if origin is not None and origin in self.allowed:
            if preflight:
                await self._answer_preflight(send, origin, ALLOWED_METHODS)
            else:
                await self.app(scope, receive, _adding(send, {
                    "Access-Control-Allow-Origin": origin, "Access-Control-Expose-Headers": EXPOSED_HEADERS}))
            return
        if origin is not None and not _same_origin(origin, headers.get("host")):
            self.refused.labels("preflight" if preflight else "request").inc()
            if preflight:
                refusal = OriginNotAllowed(f"This site ({origin}) is not allowed to use this photo search from a "
                                           "browser: the store lists its sites in GATEWAY_ALLOWED_ORIGINS.")
                await error_response(refusal.status, refusal.code, refusal.message, {"Vary": "Origin"})(
                    scope, receive, send)
                return
        await self.app(scope, receive, _adding(send, {}))

    @staticmethod
    async def _answer_preflight(send: Send, origin: str, methods: str) -> None:
        headers = MutableHeaders({"Access-Control-Allow-Origin": origin, "Access-Control-Allow-Methods": methods,
                                  "Access-Control-Allow-Headers": ALLOWED_HEADERS,
                                  "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE_S), "Content-Length": "0"})
        headers.add_vary_header("Origin")
        await send({"type": "http.response.start", "status": 204, "headers": headers.raw})
        await send({"type": "http.response.body", "body": b""})


def _same_origin(origin: str, host: str | None) -> bool:
    """The gateway's own page: the Origin's host and port are the ones the request was sent to.

    The scheme is not compared: behind a TLS proxy the page is https while the gateway hears http.
    """
    return host is not None and urlsplit(origin).netloc.lower() == host.lower()


def _adding(send: Send, extra: dict[str, str]) -> Send:
    """`send`, with `extra` added to the answer's headers, and `Vary: Origin` (the answer depends on it)."""
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = MutableHeaders(scope=message)
            for name, value in extra.items():
                headers[name] = value
            if "Access-Control-Allow-Origin" not in extra or extra["Access-Control-Allow-Origin"] != "*":
                headers.add_vary_header("Origin")
        await send(message)

    return sending
