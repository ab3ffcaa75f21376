"""uvicorn's httptools protocol, plus the two limits it lacks for the request head.

uvicorn 0.54 with httptools arms no timer until a first response is sent (`timeout_keep_alive`
starts only then), and llhttp sets no limit on the size of the request line and headers
(`h11_max_incomplete_event_size` applies to h11 only). So a client that connects and sends
nothing, or sends headers a byte at a time, or sends headers without end, would hold its
connection and buffers for ever. Here the head must arrive within `header_timeout_s` of the
connection (or of the first byte of a keep-alive request) and be at most `max_header_bytes`.

Both limits, and uvicorn's own `limit_concurrency`, answer in the JSON error envelope like every
other error (`HeadersTooLarge`, `TooManyConnections`), not in uvicorn's plain text.
"""

from __future__ import annotations

import asyncio
import logging

from uvicorn._types import ASGI3Application, ASGIReceiveCallable, ASGISendCallable, Scope
from uvicorn.protocols.http.flow_control import service_unavailable
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from lookalike.errors import HeadersTooLarge, TooManyConnections
from lookalike.observability import CONNECTIONS_REFUSED

log = logging.getLogger("lookalike.connections")

_HEADERS_TOO_LARGE = HeadersTooLarge("The request line and headers are too large.").response_bytes()
_TOO_MANY_CONNECTIONS = TooManyConnections(
    "This service has as many connections open as it takes. Please try again in a moment.",
    headers={"Retry-After": "1"})
_TOO_MANY_CONNECTIONS_BODY = _TOO_MANY_CONNECTIONS.body()
_TOO_MANY_CONNECTIONS_HEADERS = [(name.encode(), value.encode())
                                 for name, value in _TOO_MANY_CONNECTIONS.closing_headers(_TOO_MANY_CONNECTIONS_BODY)]


async def too_many_connections(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
    """What uvicorn's `limit_concurrency` answers, as JSON: it stands in for uvicorn's `service_unavailable`."""
    await send({"type": "http.response.start", "status": _TOO_MANY_CONNECTIONS.status,
                "headers": _TOO_MANY_CONNECTIONS_HEADERS})
    await send({"type": "http.response.body", "body": _TOO_MANY_CONNECTIONS_BODY, "more_body": False})


class HeadLimitedHttpToolsProtocol(HttpToolsProtocol):
    """Subclassed by `with_head_limits`, which sets the two limits."""

    header_timeout_s: float = 10.0
    max_header_bytes: int = 64 * 1024

    _head_timer: asyncio.TimerHandle | None = None
    _head_bytes: int = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_deadline()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._head_timer is None:
            self._arm_head_deadline()

    def on_headers_complete(self) -> None:
        self._disarm_head_deadline()
        super().on_headers_complete()

    def data_received(self, data: bytes) -> None:
        if self._head_timer is not None:
            self._head_bytes += len(data)
        super().data_received(data)
        if self._head_timer is not None and self._head_bytes > self.max_header_bytes and not self.transport.is_closing():
            self._disarm_head_deadline()
            self._count_refused("headers_too_large")
            self.transport.write(_HEADERS_TOO_LARGE)
            self.transport.close()

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
        if app is service_unavailable:  # uvicorn's limit_concurrency was reached
            self._count_refused("too_many_connections")
            app = too_many_connections
        super()._start_asgi_task(cycle, app)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_deadline()
        super().connection_lost(exc)

    def _arm_head_deadline(self) -> None:
        self._head_bytes = 0
        self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_deadline_passed)

    def _disarm_head_deadline(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_deadline_passed(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            log.info("closed a connection whose request head did not arrive in %.0f s", self.header_timeout_s,
                     extra={"client": self.client})
            self._count_refused("head_timeout")
            self.transport.close()

    def _count_refused(self, reason: str) -> None:
        """On the app's /metrics, through the lifespan state (absent while the app has none, e.g. at start-up)."""
        counter = self.app_state.get(CONNECTIONS_REFUSED)
        if counter is not None:
            counter.labels(reason).inc()


def with_head_limits(header_timeout_s: float, max_header_bytes: int) -> type[HeadLimitedHttpToolsProtocol]:
    """The protocol class to give uvicorn as `http=`."""
    return type("HeadLimitedHttpToolsProtocol", (HeadLimitedHttpToolsProtocol,),
                {"header_timeout_s": header_timeout_s, "max_header_bytes": max_header_bytes})
