"""uvicorn's httptools protocol, plus the two limits it lacks for the request head.

uvicorn 0.54 with httptools arms no timer until a first response is sent (`timeout_keep_alive`
starts only then), and llhttp sets no limit on the size of the request line and headers
(`h11_max_incomplete_event_size` applies to h11 only). So a client that connects and sends
nothing, or sends headers a byte at a time, or sends headers without end, would hold its
connection and buffers for ever. Here the head must arrive within `header_timeout_s` of the
connection (or of the first byte of a keep-alive request) and be at most `max_header_bytes`.
"""

from __future__ import annotations

import asyncio
import logging

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("lookalike.connections")

_HEADERS_TOO_LARGE = (b'{"error":{"code":"headers_too_large","message":'
                      b'"The request line and headers are too large."}}')


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
            self.transport.write(b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
                                 b"content-length: %d\r\nconnection: close\r\n\r\n%s"
                                 % (len(_HEADERS_TOO_LARGE), _HEADERS_TOO_LARGE))
            self.transport.close()

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
            self.transport.close()


def with_head_limits(header_timeout_s: float, max_header_bytes: int) -> type[HeadLimitedHttpToolsProtocol]:
    """The protocol class to give uvicorn as `http=`."""
    return type("HeadLimitedHttpToolsProtocol", (HeadLimitedHttpToolsProtocol,),
                {"header_timeout_s": header_timeout_s, "max_header_bytes": max_header_bytes})
