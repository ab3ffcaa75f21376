"""Nothing internal on the public port: what the gateway answers when its services fail, and who reads /metrics.

In process: `httpx.MockTransport` plays both services, and fails one of them in each of the ways
a service, a proxy or the network can. Every answer is searched for what only the inside knows:
the services' addresses, the Milvus URI, raw gRPC errors, file paths. The detail is not lost: it
goes to the log, under the request's id.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from lookalike.contracts import encode_embedding
from lookalike.observability import request_id_header
from tests.gateway.mock_services import gateway_over
from tests.gateway.test_readiness import classifier_ready, similarity_ready
from tests.support import ClientResponse

MILVUS_URI = "http://milvus-7.internal.example:19530"
INTERNAL_ADDRESS = "10.20.30.40"
INDEX_PATH = "/srv/lookalike/index/versions"
GRPC = "StatusCode.UNAVAILABLE"
SECRETS = [MILVUS_URI, "milvus-7.internal", INTERNAL_ADDRESS, INDEX_PATH, GRPC, "127.0.0.1:9001", "127.0.0.1:9002",
           ":19530", "Traceback", "grpc"]
TOKEN = "operator-token-of-some-length"
PHOTO = b"\xff\xd8 a small photo"
DETAIL = f"failed to connect to {MILVUS_URI} ({INTERNAL_ADDRESS}): <_InactiveRpcError of RPC that terminated with " \
         f"status = {GRPC}, details = \"failed to connect to all addresses\"> while reading {INDEX_PATH}/v7"

Fault = Callable[[httpx.Request], httpx.Response]


def envelope(status: int, code: str) -> Fault:
    return lambda request: httpx.Response(status, json={"error": {"code": code, "message": DETAIL}})


def raises(error: type[httpx.TransportError]) -> Fault:
    def fault(request: httpx.Request) -> httpx.Response:
        raise error(f"{DETAIL} at {request.url}", request=request)
    return fault


FAULTS: dict[str, Fault] = {
    "connection refused": raises(httpx.ConnectError),
    "timed out": raises(httpx.ReadTimeout),
    "connection dropped": raises(httpx.RemoteProtocolError),
    "vector store down": envelope(503, "vector_store_unavailable"),
    "not ready": envelope(503, "not_ready"),
    "overloaded": envelope(503, "overloaded"),
    "internal error": envelope(500, "internal_error"),
    "proxy's 502 page": lambda request: httpx.Response(502, text=f"<html>502 Bad Gateway: upstream {DETAIL}</html>"),
    "malformed json": lambda request: httpx.Response(200, text=f'{{"category": "{DETAIL}", '),
    "wrong shape": lambda request: httpx.Response(200, json={"address": INTERNAL_ADDRESS, "detail": DETAIL}),
}
SERVICES = {"classifier": 9001, "similarity": 9002}
ROUTES: dict[str, Callable[[TestClient], ClientResponse]] = {
    "photo search": lambda gateway: gateway.post("/api/v1/search", files={"image": ("a.jpg", PHOTO, "image/jpeg")}),
    "words search": lambda gateway: gateway.get("/api/v1/search/text", params={"q": "green chair"}),
    "similar": lambda gateway: gateway.get("/api/v1/items/chair-1/similar"),
    "readiness": lambda gateway: gateway.get("/readyz"),
    "catalogue": lambda gateway: gateway.get("/api/v1/catalog"),
}
CASES = list(itertools.product(SERVICES, FAULTS, ROUTES))


def healthy(request: httpx.Request) -> httpx.Response:
    """Both services as they answer when all is well."""
    path = request.url.path
    if path == "/readyz":
        return httpx.Response(200, json=classifier_ready() if request.url.port == 9001 else similarity_ready())
    if path == "/v1/classify":
        return httpx.Response(200, json={
            "category": "chair", "confidence": 0.7, "probabilities": {"chair": 0.7, "lamp": 0.3},
            "embedding": encode_embedding(np.ones(8, dtype=np.float32)),
            "model": {"weights": "random", "model_id": "resnet50-random-0-abc"}, "index_version": "v1",
            "timings_ms": {}})
    if path == "/v1/columns":
        return httpx.Response(200, json={"columns": [], "index_version": "v1"})
    hit = {"id": "chair-2", "name": "Two", "category": "chair", "score": 0.9}
    if path in ("/v1/search", "/v1/items/chair-1/similar"):
        return httpx.Response(200, json={"category": "chair", "hits": [hit], "index_version": "v1"})
    if path == "/v1/search/text":
        return httpx.Response(200, json={"query": "green chair", "category": None, "hits": [hit], "index_version": "v1"})
    return httpx.Response(404, json={"error": {"code": "not_found", "message": "no such thing"}})


class Upstreams:
    """Both services, one of which fails as `fault` says (every call to it, /readyz too)."""

    def __init__(self) -> None:
        self.failing: tuple[int, Fault] | None = None

    def handle(self, request: httpx.Request) -> httpx.Response:
        if self.failing and request.url.port == self.failing[0]:
            return self.failing[1](request)
        return healthy(request)


@pytest.fixture(scope="module")
def upstreams() -> Upstreams:
    return Upstreams()


@pytest.fixture(scope="module")
def gateway(upstreams: Upstreams, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with gateway_over(upstreams.handle, tmp_path_factory.mktemp("index"), LOOKALIKE_ADMIN_TOKEN=TOKEN,
                      searches_per_minute=0) as client:
        yield client


def leaks(response: ClientResponse) -> list[str]:
    seen = (response.text + " " + " ".join(f"{k}: {v}" for k, v in response.headers.items())).lower()
    return [secret for secret in SECRETS if secret.lower() in seen]


@pytest.mark.parametrize("service, fault, route", CASES, ids=[" / ".join(case) for case in CASES])
def test_no_fault_of_a_service_shows_an_internal_detail(gateway: TestClient, upstreams: Upstreams,
                                                        service: str, fault: str, route: str) -> None:
    upstreams.failing = (SERVICES[service], FAULTS[fault])
    try:
        response = ROUTES[route](gateway)
    finally:
        upstreams.failing = None
    assert leaks(response) == [], response.text
    assert response.status_code < 500 or response.status_code == 503, response.text
    if response.status_code == 503 and route not in ("readiness",):
        error = response.json()["error"]
        assert error["code"] in {"service_unavailable", "vector_store_unavailable", "not_ready", "overloaded"}
        assert "try again" in error["message"].lower() and response.headers["retry-after"]


def test_a_hundred_faults_are_generated_over_routes_that_work_without_them(gateway: TestClient) -> None:
    assert len(CASES) == 100
    assert {route: ROUTES[route](gateway).status_code for route in ROUTES} == dict.fromkeys(ROUTES, 200)


class Captured(logging.Handler):
    """Log records with the request id of the context they were written in, as the service's log shows them."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[tuple[str | None, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((request_id_header().get("X-Request-ID"), record.getMessage()))


@pytest.fixture
def log_lines() -> Iterator[list[tuple[str | None, str]]]:
    handler = Captured()
    logger = logging.getLogger("lookalike.gateway")
    logger.addHandler(handler)
    level, logger.level = logger.level, logging.INFO
    yield handler.lines
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_the_vector_store_s_503_keeps_its_code_and_its_detail_goes_to_the_log_under_the_request_id(
        gateway: TestClient, upstreams: Upstreams, log_lines: list[tuple[str | None, str]]) -> None:
    upstreams.failing = (9002, FAULTS["vector store down"])
    try:
        response = gateway.get("/api/v1/search/text", params={"q": "chair"}, headers={"X-Request-ID": "req-42"})
    finally:
        upstreams.failing = None
    error = response.json()["error"]
    assert response.status_code == 503 and error["code"] == "vector_store_unavailable"
    assert error["message"] == ("Search is unavailable right now: the similarity service cannot reach its vector "
                                "store. Please try again shortly.")
    assert response.headers["x-request-id"] == "req-42"
    assert any(request_id == "req-42" and MILVUS_URI in line for request_id, line in log_lines), log_lines


def test_a_user_caused_error_of_a_service_still_reaches_the_shopper_in_its_words(gateway: TestClient) -> None:
    response = gateway.get("/api/v1/items/nothing-here/similar")
    assert response.status_code == 404 and response.json()["error"] == {"code": "not_found",
                                                                         "message": "no such thing"}


def test_the_public_readiness_says_why_in_words_and_holds_no_service_s_details(
        gateway: TestClient, upstreams: Upstreams) -> None:
    ready = gateway.get("/readyz")
    assert ready.status_code == 200 and set(ready.json()) == {"ready", "reason", "weights"}
    upstreams.failing = (9002, lambda request: httpx.Response(503, json=similarity_ready(ready=False, reason=DETAIL)))
    try:
        not_ready = gateway.get("/readyz")
    finally:
        upstreams.failing = None
    assert not_ready.status_code == 503 and not_ready.json()["reason"] == "the similarity service is not ready"
    assert leaks(not_ready) == []


def test_metrics_need_the_operator_token(gateway: TestClient) -> None:
    assert gateway.get("/metrics").status_code == 401
    wrong = gateway.get("/metrics", headers={"Authorization": "Bearer not-the-token"})
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "admin_token_required"
    scraped = gateway.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert scraped.status_code == 200 and "http_requests_total" in scraped.text


def test_without_an_operator_token_metrics_are_off(tmp_path: Path) -> None:
    with gateway_over(healthy, tmp_path) as gateway:
        refused = gateway.get("/metrics", headers={"Authorization": "Bearer anything"})
    assert refused.status_code == 401 and "LOOKALIKE_ADMIN_TOKEN" in refused.json()["error"]["message"]


@pytest.mark.parametrize("name, value", [("MILVUS_TOKEN", "milvus-secret-token"),
                                         ("MILVUS_PASSWORD", "milvus-secret-password")])
def test_credentials_are_secrets_that_never_print(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    from lookalike.settings import VectorStoreSettings

    monkeypatch.setenv(name, value)
    settings = VectorStoreSettings()
    assert value not in repr(settings) and value not in str(settings.model_dump())
    assert getattr(settings, name.lower()).get_secret_value() == value


def test_the_feedback_database_url_is_a_secret(tmp_path: Path) -> None:
    from gateway.settings import GatewaySettings

    settings = GatewaySettings(feedback_db_url="postgresql://shop:hunter2@db/votes", index=tmp_path)
    assert "hunter2" not in repr(settings)

