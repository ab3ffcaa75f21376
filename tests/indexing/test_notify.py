"""Telling services about a new version: one line per service, saying how it went; nothing raises."""

from __future__ import annotations

import httpx

from indexing.notify import notify_reload


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
