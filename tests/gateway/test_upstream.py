"""The gateway's client for one internal service: errors pass through, dead or busy replicas pass the request on.

In process, with `httpx.MockTransport` standing in for the replicas: no sockets, no services.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest

from gateway.upstream import Upstream
from lookalike.contracts import ClassifierReadiness
from lookalike.errors import ApiError, ServiceUnavailable

FIRST, SECOND = "http://127.0.0.1:9001", "http://127.0.0.2:9001"
Handler = Callable[[httpx.Request], httpx.Response]


def error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": message}}, headers=headers)


def upstream(handler: Handler, urls: str = FIRST) -> Upstream:
    return Upstream("classifier", urls, timeout_s=1.0, transport=httpx.MockTransport(handler))


def ask(service: Upstream, path: str = "/v1/classify") -> httpx.Response:
    async def go() -> httpx.Response:
        try:
            return await service.request("POST", path, content=b"photo")
        finally:
            await service.aclose()
    return asyncio.run(go())


def raised(service: Upstream) -> ApiError:
    with pytest.raises(ApiError) as caught:
        ask(service)
    return caught.value


def test_a_success_comes_back_as_it_is() -> None:
    assert ask(upstream(lambda r: httpx.Response(200, json={"ok": True}))).json() == {"ok": True}


def test_a_user_error_passes_through_with_its_status_code_and_message() -> None:
    exc = raised(upstream(lambda r: error(422, "broken_image", "This image is damaged.")))
    assert (exc.status, exc.code, exc.message) == (422, "broken_image", "This image is damaged.")


def test_a_busy_service_s_503_keeps_its_retry_after() -> None:
    exc = raised(upstream(lambda r: error(503, "overloaded", "Busy.", {"Retry-After": "1"})))
    assert (exc.status, exc.code, exc.headers) == (503, "overloaded", {"retry-after": "1"})


def test_a_500_becomes_a_503_that_names_the_service_and_leaks_nothing() -> None:
    exc = raised(upstream(lambda r: httpx.Response(500, text="Traceback (most recent call last): ...")))
    assert isinstance(exc, ServiceUnavailable)
    assert "classifier service failed" in exc.message and "Traceback" not in exc.message


def test_an_unreachable_replica_passes_the_request_to_the_next() -> None:
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.host)
        if request.url.host == "127.0.0.1":
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(200, json={"served_by": request.url.host})

    assert ask(upstream(handler, f"{FIRST},{SECOND}")).json() == {"served_by": "127.0.0.2"}
    assert "127.0.0.2" in seen


def test_a_busy_replica_passes_the_request_to_the_next() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "127.0.0.1":
            return error(503, "overloaded", "Busy.")
        return httpx.Response(200, json={"served_by": request.url.host})

    async def twice() -> list[str]:
        service = upstream(handler, f"{FIRST},{SECOND}")
        try:
            return [(await service.request("POST", "/v1/classify")).json()["served_by"] for _ in range(2)]
        finally:
            await service.aclose()

    assert asyncio.run(twice()) == ["127.0.0.2", "127.0.0.2"]


def test_when_every_replica_is_unreachable_the_answer_is_a_503_with_retry_after() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    exc = raised(upstream(handler, f"{FIRST},{SECOND}"))
    assert exc.status == 503 and exc.headers["Retry-After"] == "5" and "unavailable" in exc.message


def test_a_timeout_becomes_a_503_and_is_not_sent_again() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.host)
        raise httpx.ReadTimeout("too slow", request=request)

    exc = raised(upstream(handler, f"{FIRST},{SECOND}"))
    assert exc.status == 503 and "did not answer in time" in exc.message and exc.headers["Retry-After"] == "2"
    assert len(calls) == 1  # the replica may have started on it: sending it again could run it twice


def test_readiness_prefers_a_ready_replica_and_is_none_when_none_answers() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "127.0.0.1":
            return httpx.Response(503, json={"ready": False, "reason": "loading"})
        return httpx.Response(200, json={"ready": True})

    async def readiness(h: Handler) -> ClassifierReadiness | None:
        service = upstream(h, f"{FIRST},{SECOND}")
        try:
            return await service.readiness(ClassifierReadiness)
        finally:
            await service.aclose()

    ready = asyncio.run(readiness(handler))
    assert ready is not None and ready.ready

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    assert asyncio.run(readiness(down)) is None
