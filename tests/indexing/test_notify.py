"""Telling services about a new version: one line per service, saying how it went; nothing raises."""

from __future__ import annotations

import httpx
from pydantic import SecretStr

from indexing.notify import notify_reload, reload_services


def test_each_service_is_asked_to_reload_and_says_what_it_serves() -> None:
    asked = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append((request.method, str(request.url)))
        return httpx.Response(200, json={"index_version": "v2", "previous_version": "v1"})

    lines = notify_reload(["http://127.0.0.1:8001", "http://127.0.0.1:8002/"], transport=httpx.MockTransport(handler))
    assert asked == [("POST", "http://127.0.0.1:8001/v1/reload"), ("POST", "http://127.0.0.1:8002/v1/reload")]
    assert lines == ["http://127.0.0.1:8001: now serving v2", "http://127.0.0.1:8002: now serving v2"]


def test_an_unreachable_service_is_reported_not_raised() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    [line] = notify_reload(["http://127.0.0.1:8001"], transport=httpx.MockTransport(handler))
    assert line.startswith("http://127.0.0.1:8001: not reached (ConnectError)") and "restarts" in line


def test_a_refused_reload_is_reported_with_its_status_and_message() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(409, json={"error": {"code": "index_model_mismatch", "message": "Re-index."}})

    [line] = notify_reload(["http://127.0.0.1:8001"], transport=httpx.MockTransport(handler))
    assert line.startswith("http://127.0.0.1:8001: reload refused (409)") and "index_model_mismatch" in line


def test_no_services_means_nothing_to_say() -> None:
    assert notify_reload([]) == []


def test_the_internal_token_goes_with_every_reload() -> None:
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization"))
        return httpx.Response(200, json={"index_version": "v2", "previous_version": "v1"})

    [reloaded] = reload_services(["http://127.0.0.1:8001"], SecretStr("s3cret"), transport=httpx.MockTransport(handler))
    assert seen == ["Bearer s3cret"] and reloaded.holds == "v2"


def test_a_refused_reload_asks_the_service_which_version_it_still_holds() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/readyz":
            return httpx.Response(200, json={"ready": True, "index_version": "v1"})
        return httpx.Response(401, json={"error": {"code": "internal_token_required", "message": "Set it."}})

    [reloaded] = reload_services(["http://127.0.0.1:8001"], None, transport=httpx.MockTransport(handler))
    assert reloaded.holds == "v1", "pruning keeps what it still serves"
    assert "LOOKALIKE_INTERNAL_TOKEN" in reloaded.line
