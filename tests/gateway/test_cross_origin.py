"""GATEWAY_ALLOWED_ORIGINS, in process: which sites' pages may call the API from a browser, and what the others get.

The gateway runs under TestClient with its services played by a function; a browser's requests are written out
as it sends them (an `Origin` header, and for a preflight `OPTIONS` with `Access-Control-Request-Method`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from gateway.settings import GatewaySettings
from tests.gateway.mock_services import gateway_over
from tests.support import OPERATOR_TOKEN, ClientResponse, operator

SHOP = "http://127.0.0.2:8080"
ELSEWHERE = "https://elsewhere.example"


def nothing_upstream(request: httpx.Request) -> httpx.Response:
    return httpx.Response(503, json={"error": {"code": "service_unavailable", "message": "not in this test"}})


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[TestClient]:
    with gateway_over(nothing_upstream, tmp_path, GATEWAY_ALLOWED_ORIGINS=f"{SHOP},https://www.shop.example",
                      LOOKALIKE_ADMIN_TOKEN=OPERATOR_TOKEN) as client:
        yield client


def preflight(client: TestClient, origin: str, path: str = "/api/v1/search") -> ClientResponse:
    return client.options(path, headers={"Origin": origin, "Access-Control-Request-Method": "POST",
                                         "Access-Control-Request-Headers": "x-session-id"})


def refused(client: TestClient, kind: str) -> float:
    for line in client.get("/metrics", headers=operator()).text.splitlines():
        if line.startswith(f'http_cross_origin_refused_total{{kind="{kind}"}}'):
            return float(line.split()[-1])
    return 0.0


def test_the_allow_list_takes_exact_origins_under_its_new_name_or_the_old_one(monkeypatch: pytest.MonkeyPatch) -> None:
    assert GatewaySettings().allowed_origins == []  # the default: same origin only
    monkeypatch.setenv("GATEWAY_ALLOWED_ORIGINS", "https://shop.example:443/, http://127.0.0.2:8080,https://[::1]:9")
    assert GatewaySettings().allowed_origins == ["https://shop.example", "http://127.0.0.2:8080", "https://[::1]:9"]
    monkeypatch.delenv("GATEWAY_ALLOWED_ORIGINS")
    monkeypatch.setenv("GATEWAY_CORS_ALLOW_ORIGINS", "https://shop.example")
    assert GatewaySettings().allowed_origins == ["https://shop.example"]


@pytest.mark.parametrize("bad", ["*", "shop.example", "https://shop.example/products", "ftp://shop.example"])
def test_anything_but_an_exact_origin_is_refused_with_how_to_write_one(bad: str) -> None:
    with pytest.raises(ValidationError, match=r"https://shop\.example"):
        GatewaySettings(GATEWAY_ALLOWED_ORIGINS=bad)


def test_a_listed_site_gets_its_preflight_answered_with_the_methods_and_headers_the_api_takes(
        gateway: TestClient) -> None:
    answer = preflight(gateway, SHOP)
    assert answer.status_code == 204
    assert answer.headers["access-control-allow-origin"] == SHOP
    assert "POST" in answer.headers["access-control-allow-methods"]
    assert "X-Session-ID" in answer.headers["access-control-allow-headers"]
    assert "Origin" in answer.headers["vary"]
    assert "access-control-allow-credentials" not in answer.headers  # never `*`, never credentials


def test_a_listed_site_reads_the_answers_and_their_request_id(gateway: TestClient) -> None:
    answer = gateway.get("/api/v1/catalog", headers={"Origin": SHOP})
    assert answer.headers["access-control-allow-origin"] == SHOP
    assert answer.headers["access-control-expose-headers"] == "X-Request-ID"
    assert "Origin" in answer.headers["vary"]


def test_another_site_gets_no_cors_headers_and_is_counted(gateway: TestClient) -> None:
    answer = preflight(gateway, ELSEWHERE)
    assert answer.status_code == 403 and answer.json()["error"]["code"] == "origin_not_allowed"
    assert not [name for name in answer.headers if name.startswith("access-control-")]
    assert "Origin" in answer.headers["vary"]
    plain = gateway.get("/api/v1/catalog", headers={"Origin": ELSEWHERE})
    assert "access-control-allow-origin" not in plain.headers
    assert (refused(gateway, "preflight"), refused(gateway, "request")) == (1, 1)


def test_the_gateways_own_page_is_same_origin_and_not_counted(gateway: TestClient) -> None:
    answer = gateway.get("/api/v1/catalog", headers={"Origin": "http://testserver"})
    assert "access-control-allow-origin" not in answer.headers
    assert refused(gateway, "request") == 0


def test_with_no_allow_list_every_other_site_is_refused(tmp_path: Path) -> None:
    with gateway_over(nothing_upstream, tmp_path, LOOKALIKE_ADMIN_TOKEN=OPERATOR_TOKEN) as client:
        assert "access-control-allow-origin" not in preflight(client, SHOP).headers
        assert refused(client, "preflight") == 1


def test_the_widgets_code_is_public_so_that_any_site_can_show_its_message(gateway: TestClient) -> None:
    for origin in (SHOP, ELSEWHERE):
        answer = gateway.get("/widget.js", headers={"Origin": origin})
        assert answer.status_code == 200 and answer.headers["access-control-allow-origin"] == "*"
    assert refused(gateway, "request") == 0
