"""Request ids across the three services, JSON log lines, Prometheus metrics, CORS, loopback binding."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from classifier_service.settings import ClassifierSettings
from gateway.settings import GatewaySettings
from lookalike.observability import install_observability
from lookalike.service import install_error_handlers
from similarity_service.settings import SimilaritySettings
from tests.support import Services, operator


def log_events(services: Services, name: str) -> list[dict[str, object]]:
    """Every line of a service's log, parsed: each must be one JSON object."""
    lines = (services.logs / f"{name}.log").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def search(services: Services, photo: Path, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(f"{services.gateway}/api/v1/search", files={"image": ("p.jpg", photo.read_bytes())},
                      headers=headers, timeout=60)


def test_a_given_request_id_is_echoed_and_reaches_both_services_logs(services: Services, small_catalog: Path) -> None:
    request_id = "shop-42.checkout-7f3a"
    response = search(services, next((small_catalog / "bed").iterdir()), {"X-Request-ID": request_id})
    assert response.status_code == 200 and response.headers["x-request-id"] == request_id
    deadline = time.monotonic() + 10
    while True:
        seen = {name for name in Services.modules
                if any(e.get("request_id") == request_id for e in log_events(services, name))}
        if seen == set(Services.modules) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert seen == set(Services.modules)
    line = next(e for e in log_events(services, "gateway") if e.get("request_id") == request_id)
    assert line["message"] == "request" and line["status"] == 200 and line["route"] == "/api/v1/search"
    assert {"time", "level", "service", "logger", "duration_ms"} <= set(line)


@pytest.mark.parametrize("sent", [None, "has spaces in it", "x" * 500, "ünïcode"])
def test_a_missing_or_malformed_request_id_is_replaced_by_a_fresh_one(services: Services, sent: str | None) -> None:
    headers = {"X-Request-ID": sent.encode()} if sent else {}
    response = httpx.get(services.gateway + "/healthz", headers=headers)
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])


def test_errors_carry_the_request_id_too(services: Services) -> None:
    response = httpx.get(services.gateway + "/api/v1/items/nope/image", headers={"X-Request-ID": "err-1"})
    assert response.status_code == 404 and response.headers["x-request-id"] == "err-1"


@pytest.mark.anyio
async def test_an_unexpected_failure_is_a_plain_500_that_still_carries_the_request_id(
        caplog: pytest.LogCaptureFixture) -> None:
    app = FastAPI()
    install_error_handlers(app)
    install_observability(app)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)  # Starlette re-raises after answering
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        response = await client.get("/boom", headers={"X-Request-ID": "boom-1"})
    assert response.status_code == 500 and response.headers["x-request-id"] == "boom-1"
    assert response.json()["error"]["code"] == "internal_error" and "secret" not in response.text
    assert any(getattr(r, "request_id", None) == "boom-1" for r in caplog.records if r.levelname == "ERROR")


def test_every_log_line_of_every_service_is_one_json_object(services: Services) -> None:
    for name in Services.modules:
        events = log_events(services, name)
        assert events and all({"time", "level", "service", "message"} <= set(e) for e in events)


def metric_lines(services: Services, name: str) -> str:
    response = httpx.get(services.url(name) + "/metrics", headers=operator())  # the gateway's asks for it
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return response.text


def test_all_three_services_serve_prometheus_metrics(services: Services, small_catalog: Path) -> None:
    search(services, next((small_catalog / "sofa").iterdir()))
    gateway = metric_lines(services, "gateway")
    assert re.search(r'http_requests_total\{method="POST",route="/api/v1/search",status="200"\} [1-9]', gateway)
    assert 'http_request_duration_seconds_bucket{le="0.5",method="POST",route="/api/v1/search"}' in gateway
    classifier = metric_lines(services, "classifier")
    assert re.search(r'http_requests_total\{method="POST",route="/v1/classify",status="200"\} [1-9]', classifier)
    assert re.search(r"classifier_batch_size_count [1-9]", classifier)
    assert re.search(r"^classifier_queue_length 0\.0$", classifier, re.M)
    similarity = metric_lines(services, "similarity")
    for category in ("bed", "chair", "lamp", "sofa", "table"):
        assert f'similarity_index_items{{category="{category}"}} 6.0' in similarity


def test_item_ids_never_become_metric_labels(services: Services) -> None:
    httpx.get(services.gateway + "/api/v1/items/some-unknown-id/image")
    gateway = metric_lines(services, "gateway")
    assert 'route="/api/v1/items/{item_id}/image"' in gateway and "some-unknown-id" not in gateway


def test_cors_is_off_by_default(services: Services) -> None:
    preflight = httpx.options(f"{services.gateway}/api/v1/search", headers={
        "Origin": "https://elsewhere.example", "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in preflight.headers
    plain = httpx.get(f"{services.gateway}/api/v1/catalog", headers={"Origin": "https://elsewhere.example"})
    assert "access-control-allow-origin" not in plain.headers


@pytest.fixture(scope="module")
def gateway_with_cors(built_index: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    """A gateway alone (its services need not run to answer CORS) with an allow-list of one shop."""
    stack = Services(built_index, tmp_path_factory.mktemp("cors-logs"),
                     extra_env={"GATEWAY_ALLOWED_ORIGINS": "https://shop.example, https://www.shop.example"})
    with stack.running(["gateway"], ready=(), alive=("gateway",)):
        yield stack


@pytest.mark.parametrize("origin, allowed", [("https://shop.example", True), ("https://www.shop.example", True),
                                             ("https://evil.example", False)])
def test_cors_allows_only_the_configured_origins(gateway_with_cors: Services, origin: str, allowed: bool) -> None:
    preflight = httpx.options(f"{gateway_with_cors.gateway}/api/v1/search", headers={
        "Origin": origin, "Access-Control-Request-Method": "POST"})
    assert (preflight.headers.get("access-control-allow-origin") == origin) is allowed
    plain = httpx.get(f"{gateway_with_cors.gateway}/healthz", headers={"Origin": origin})
    assert (plain.headers.get("access-control-allow-origin") == origin) is allowed


def test_every_service_binds_to_loopback_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("GATEWAY_HOST", "CLASSIFIER_HOST", "SIMILARITY_HOST"):
        monkeypatch.delenv(variable, raising=False)
    assert GatewaySettings().host == ClassifierSettings().host == SimilaritySettings().host == "127.0.0.1"
    assert GatewaySettings().allowed_origins == []
