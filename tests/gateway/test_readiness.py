"""The gateway's readiness and the catalogue's state, from what the two services answer.

In process: the gateway app runs under Starlette's TestClient and `httpx.MockTransport` plays
both services, so every combination of missing, not ready and mismatched is quick to set up.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.gateway.mock_services import gateway_over

MODEL = {"weights": "random", "model_id": "resnet50-random-0-abc", "precision": "fp32"}


def classifier_ready(**changes: Any) -> dict[str, Any]:
    return {"ready": True, "model": MODEL, "categories": ["chair", "lamp"], "index_version": "v1", **changes}


def similarity_ready(**changes: Any) -> dict[str, Any]:
    return {"ready": True, "index_version": "v1", "model_id": MODEL["model_id"], "weights": "random",
            "categories": {"chair": 3, "lamp": 2}, **changes}


@dataclass
class FakeServices:
    """What each service's /readyz answers; None means it is unreachable."""

    classifier: dict[str, Any] | None = field(default_factory=classifier_ready)
    similarity: dict[str, Any] | None = field(default_factory=similarity_ready)

    def handle(self, request: httpx.Request) -> httpx.Response:
        body = self.classifier if request.url.port == 9001 else self.similarity
        if body is None:
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(200 if body["ready"] else 503, json=body)


@pytest.fixture
def services() -> FakeServices:
    return FakeServices()


@pytest.fixture
def gateway(services: FakeServices, tmp_path: Path) -> Iterator[TestClient]:
    with gateway_over(services.handle, tmp_path) as client:
        yield client


def test_ready_when_both_services_are_ready_on_one_model(gateway: TestClient) -> None:
    response = gateway.get("/readyz")
    assert response.status_code == 200 and response.json()["ready"] and response.json()["weights"] == "random"


@pytest.mark.parametrize("missing", ["classifier", "similarity"])
def test_a_missing_service_makes_it_not_ready_and_is_named(gateway: TestClient, services: FakeServices,
                                                            missing: str) -> None:
    setattr(services, missing, None)
    response = gateway.get("/readyz")
    assert response.status_code == 503 and response.json()["reason"] == f"the {missing} service is unreachable"


def test_a_service_that_is_not_ready_is_named_and_its_own_reason_stays_internal(
        gateway: TestClient, services: FakeServices) -> None:
    services.similarity = similarity_ready(ready=False, reason="Milvus at http://10.0.0.7:19530 is down.")
    response = gateway.get("/readyz")
    assert response.status_code == 503 and response.json() == {
        "ready": False, "reason": "the similarity service is not ready", "weights": "random"}


def test_a_similarity_service_without_an_index_says_so(gateway: TestClient, services: FakeServices) -> None:
    services.similarity = similarity_ready(ready=False, reason="There is no index at /srv/index.", index_version=None)
    assert gateway.get("/readyz").json()["reason"] == "no catalogue has been indexed yet"


def test_the_classifier_comes_first_when_neither_is_ready(gateway: TestClient, services: FakeServices) -> None:
    services.classifier = classifier_ready(ready=False, reason="classifier reason")
    services.similarity = similarity_ready(ready=False, reason="similarity reason")
    assert gateway.get("/readyz").json()["reason"] == "the classifier service is not ready"


def test_services_on_different_models_are_not_ready(gateway: TestClient, services: FakeServices) -> None:
    services.similarity = similarity_ready(model_id="resnet50-imagenet-v2-abc")
    response = gateway.get("/readyz")
    assert response.status_code == 503 and "different models" in response.json()["reason"]


def test_the_catalogue_is_ready_with_its_categories(gateway: TestClient) -> None:
    body = gateway.get("/api/v1/catalog").json()
    assert body["state"] == "ready" and body["categories"] == {"chair": 3, "lamp": 2} and body["reason"] is None


def test_a_similarity_service_without_an_index_means_an_empty_catalogue(gateway: TestClient,
                                                                        services: FakeServices) -> None:
    services.similarity = similarity_ready(ready=False, reason="There is no index yet.", index_version=None,
                                           categories={})
    body = gateway.get("/api/v1/catalog").json()
    assert body["state"] == "empty" and body["reason"] == "no catalogue has been indexed yet"


def test_an_index_without_items_is_an_empty_catalogue(gateway: TestClient, services: FakeServices) -> None:
    services.similarity = similarity_ready(categories={"chair": 0})
    assert gateway.get("/api/v1/catalog").json()["state"] == "empty"


@pytest.mark.parametrize("down", ["classifier", "similarity"])
def test_a_service_down_makes_the_catalogue_unavailable(gateway: TestClient, services: FakeServices,
                                                        down: str) -> None:
    setattr(services, down, None)
    body = gateway.get("/api/v1/catalog").json()
    assert body["state"] == "unavailable" and down in body["reason"]
