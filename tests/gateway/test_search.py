"""The gateway's photo search, in process: `httpx.MockTransport` plays both services and records the calls."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.gateway.mock_services import gateway_over

COLUMNS = {"columns": [{"name": "price", "kind": "number", "products": 3, "min": 10, "max": 900}],
           "index_version": "v1"}


@pytest.fixture
def calls() -> list[str]:
    return []


@pytest.fixture
def gateway(calls: list[str], tmp_path: Path) -> Iterator[TestClient]:
    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(f"{'classifier' if request.url.port == 9001 else 'similarity'} {request.url.path}")
        if request.url.path == "/v1/columns":
            return httpx.Response(200, json=COLUMNS)
        return httpx.Response(503, json={"error": {"code": "not_ready", "message": "not in this test"}})

    with gateway_over(handle, tmp_path) as client:
        yield client


@pytest.mark.parametrize(("where", "code"), [("price<=", "bad_filter"), ("colour=green", "unknown_column")])
def test_a_bad_filter_is_refused_before_the_photo_is_classified(gateway: TestClient, calls: list[str],
                                                                where: str, code: str) -> None:
    calls.clear()
    answer = gateway.post("/api/v1/search", params={"where": where}, files={"image": ("a.jpg", b"not read", "image/jpeg")})
    assert answer.status_code == 422 and answer.json()["error"]["code"] == code
    assert "price" in answer.json()["error"]["message"]  # it lists the columns there are
    assert calls == ["similarity /v1/columns"]


def test_a_good_filter_goes_on_to_the_classifier(gateway: TestClient, calls: list[str]) -> None:
    calls.clear()
    gateway.post("/api/v1/search", params={"where": "price<=300"}, files={"image": ("a.jpg", b"\xff\xd8", "image/jpeg")})
    assert calls[0] == "similarity /v1/columns" and any(c.startswith("classifier") for c in calls[1:])
