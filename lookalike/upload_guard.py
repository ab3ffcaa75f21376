"""Upload bodies under a memory budget and deadlines, and answers that reach clients still sending.

Pure ASGI middleware around a service that reads uploads (the gateway, the classifier):

- **Budget.** When the app first asks for the body, the request reserves its declared
  `Content-Length` from one `ByteBudget` per process (a chunked body reserves each chunk as it
  arrives). No room within `UPLOAD_BUDGET_WAIT_S`: 503 `busy` with Retry-After, before the app
  reads a byte. The reservation is held until the app returns: the body stays in memory while
  it is being classified. A body that pauses for more than `STALL_S` gives back the part not yet
  arrived and from then on reserves each chunk as it comes, so slow clients cannot hold the
  budget with bytes they never send.
- **Deadlines.** A body that stalls for `UPLOAD_IDLE_S`, or has not all arrived within
  `UPLOAD_TIMEOUT_S` of the request's start, gets 408 `upload_timeout` and the connection is closed.
- **Lingering close.** uvicorn closes a `Connection: close` request's socket right after the
  answer; if the client is still sending, the kernel answers its bytes with a reset, and clients
  that read only after sending it all (urllib, requests, a browser's fetch) see the reset, not the
  JSON. So an answer given before the body ended (413 on the declared length, 415, 400, 503)
  is sent whole, then the rest of the body is read and thrown away for up to `LINGER_S` or
  `LINGER_BYTES` (like nginx's `lingering_time`) while it keeps coming (a pause of
  `UPLOAD_IDLE_S` ends it), and only then is the response finished and the connection closed.
  A client that sent `Expect: 100-continue` and was never told to continue has sent no body: it is not waited for.
"""

from __future__ import annotations

import asyncio
import time

from fastapi import FastAPI
from prometheus_client import Counter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lookalike.byte_budget import ByteBudget
from lookalike.errors import Busy, UploadTimedOut
from lookalike.heap_trim import HeapTrimmer
from lookalike.observability import Metrics
from lookalike.settings import UploadLimits

# A body whose next bytes take longer than this is slow: from then on it holds only what has arrived.
STALL_S = 0.5
# Rejections counted by what the client was told; any other early answer is labelled by its status.
_REASONS = {400: "bad_request", 408: "timeout", 413: "too_large", 415: "unsupported_media_type", 503: "busy"}


class UploadGuard:
    def __init__(self, app: ASGIApp, limits: UploadLimits, metrics: Metrics) -> None:
        self.app = app
        self.limits = limits
        self.budget = ByteBudget(limits.max_inflight_upload_bytes)
        self.trimmer = HeapTrimmer()
        metrics.gauge("uploads_inflight_bytes", "Upload bytes reserved by requests being read or handled.",
                      lambda: self.budget.in_use)
        self.rejections = Counter("upload_rejections_total", "Uploads answered before their body had all arrived, "
                                  "by reason: busy, too_large, unsupported_media_type, bad_request, timeout.",
                                  ["reason"], registry=metrics.registry)
        self.timeouts = Counter("upload_timeouts_total", "Uploads cut off with 408: `idle` (stalled) or `total`.",
                                ["kind"], registry=metrics.registry)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _has_body(scope):
            await self.app(scope, receive, send)
            return
        upload = _GuardedUpload(self, scope, receive, send)
        try:
            await self.app(scope, upload.receive, upload.send)
        finally:
            upload.release()


def _has_body(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if (name == b"content-length" and value != b"0") or (name == b"transfer-encoding" and b"chunked" in value):
            return True
    return False


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


class _GuardedUpload:
    """One request's reservation, deadlines and lingering."""

    def __init__(self, guard: UploadGuard, scope: Scope, receive: Receive, send: Send) -> None:
        self.guard, self.limits = guard, guard.limits
        self._receive, self._send = receive, send
        self.declared = _declared_length(scope)
        self.expects_continue = (b"expect", b"100-continue") in scope["headers"]
        self.started = time.monotonic()
        self.reserved = 0
        self.arrived = 0
        self.counting_as_it_arrives = self.declared is None
        self.asked = False  # the app has asked for the body (uvicorn then sends 100 Continue)
        self.finished = False  # the body has all arrived, or the client has gone
        self.timed_out = False
        self.lingering = False

    async def receive(self) -> Message:
        if self.finished:
            return await self._receive()  # e.g. waiting for a disconnect: no deadline
        if not self.asked and self.declared is not None:
            await self._reserve(self.declared)
        self.asked = True
        message = await self._next_before_deadline()
        if message["type"] == "http.disconnect" or not message.get("more_body", False):
            self.finished = True
        size = len(message.get("body", b""))
        self.arrived += size
        if self.counting_as_it_arrives and size:
            await self._reserve(size)
        return message

    async def _reserve(self, size: int) -> None:
        if not await self.guard.budget.reserve(size, self.limits.upload_budget_wait_s):
            raise Busy("The service is busy with other uploads. Please try again in a moment.",
                       headers={"Retry-After": "2"})
        self.reserved += self.guard.budget.clamp(size)

    async def _next_before_deadline(self) -> Message:
        """The next body message, or 408; a body that stalls gives back the part of its reservation not yet used."""
        left = self.started + self.limits.upload_timeout_s - time.monotonic()
        kind = "idle" if self.limits.upload_idle_s < left else "total"
        limit = max(0.0, min(self.limits.upload_idle_s, left))
        arriving = asyncio.ensure_future(self._receive())
        try:
            done, _ = await asyncio.wait({arriving}, timeout=min(STALL_S, limit))
            if not done:
                self._count_as_it_arrives()
                done, _ = await asyncio.wait({arriving}, timeout=max(0.0, limit - STALL_S))
        finally:
            arriving.cancel()  # a no-op once it is done
        if not done:
            self.timed_out = True
            self.guard.timeouts.labels(kind).inc()
            raise UploadTimedOut("The upload was too slow and has been cut off. Please try again on a better "
                                 "connection, or send a smaller photo.")
        return arriving.result()

    def _count_as_it_arrives(self) -> None:
        """From now on reserve only what arrives: a stalled client must not hold memory it does not use."""
        if not self.counting_as_it_arrives:
            self.counting_as_it_arrives = True
            kept = self.guard.budget.clamp(self.arrived)
            self.guard.budget.release(self.reserved - kept)
            self.reserved = kept

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start" and not self.finished:
            status = message["status"]
            self.guard.rejections.labels(_REASONS.get(status, f"status_{status}")).inc()
            message["headers"] = [*message.get("headers", []), (b"connection", b"close")]
            self.lingering = not self.timed_out and (self.asked or not self.expects_continue)
        if message["type"] == "http.response.body" and self.lingering and not message.get("more_body", False):
            await self._send({**message, "more_body": True})  # the client now has the whole answer
            await self._linger()
            message = {"type": "http.response.body", "body": b"", "more_body": False}
        await self._send(message)

    async def _linger(self) -> None:
        """Read and drop the rest of the body, within `linger_s` and `linger_bytes`, while it keeps coming."""
        self.release()  # nothing is kept from here on
        deadline = time.monotonic() + self.limits.linger_s
        dropped = 0
        while dropped <= self.limits.linger_bytes:
            wait = min(self.limits.upload_idle_s, deadline - time.monotonic())
            try:
                message = await asyncio.wait_for(self._receive(), max(0.0, wait))
            except TimeoutError:
                break
            dropped += len(message.get("body", b""))
            if message["type"] == "http.disconnect" or not message.get("more_body", False):
                break
        self.guard.trimmer.freed(dropped)

    def release(self) -> None:
        if self.reserved:
            self.guard.budget.release(self.reserved)
            self.guard.trimmer.freed(self.reserved)
            self.reserved = 0


def install_upload_guard(app: FastAPI, limits: UploadLimits, metrics: Metrics) -> None:
    """Guard every request with a body on `app`; its gauge and counters go to `metrics`."""
    app.add_middleware(UploadGuard, limits=limits, metrics=metrics)
