"""One index version per search, in process: `httpx.MockTransport` plays two services that reload one after
the other, and a search caught between them waits for both and answers on one version."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from lookalike.contracts import encode_embedding
from tests.gateway.mock_services import CLASSIFIER, gateway_over

PHOTO = b"\xff\xd8 a small photo"
CATEGORIES = {"v1": ["chair", "sofa"], "v2": ["chair", "sofa", "lamp"]}  # v2 adds lamps


class Reloading:
    """A classifier and a similarity service, each on its own version; `reload_similarity_on_readyz` makes the
    similarity service catch up as soon as the gateway asks how things stand (as the job's next reload does)."""

    def __init__(self) -> None:
        self.classifier = ("v1", "model-1")
        self.similarity = ("v1", "model-1")
        self.catch_up_when_asked = False
        self.classified = 0
        self.searches: list[dict[str, Any]] = []

    def readiness(self, version: str, model: str, classifier: bool) -> httpx.Response:
        if classifier:
            return httpx.Response(200, json={"ready": True, "index_version": version,
                                             "model": {"weights": "random", "model_id": model},
                                             "categories": CATEGORIES[version]})
        return httpx.Response(200, json={"ready": True, "index_version": version, "model_id": model,
                                         "weights": "random", "categories": dict.fromkeys(CATEGORIES[version], 3)})

    def handle(self, request: httpx.Request) -> httpx.Response:
        on_classifier = str(request.url).startswith(CLASSIFIER)
        if request.url.path == "/readyz":
            if not on_classifier and self.catch_up_when_asked:
                self.similarity = self.classifier
            return self.readiness(*(self.classifier if on_classifier else self.similarity), on_classifier)
        if request.url.path == "/v1/classify":
            self.classified += 1
            version, model = self.classifier
            names = CATEGORIES[version]
            probabilities = {name: (0.9 if name == names[-1] else 0.1 / (len(names) - 1)) for name in names}
            return httpx.Response(200, json={
                "category": names[-1], "confidence": 0.9, "probabilities": probabilities,
                "embedding": encode_embedding(np.ones(8, dtype=np.float32)),
                "model": {"weights": "random", "model_id": model}, "index_version": version, "timings_ms": {}})
        if request.url.path == "/v1/search":
            asked = json.loads(request.content)
            self.searches.append(asked)
            version, _ = self.similarity
            if asked.get("index_version") not in (None, version):
                return httpx.Response(409, json={"error": {"code": "version_skew", "message": "between reloads"}})
            if asked["category"] not in CATEGORIES[version]:
                return httpx.Response(422, json={"error": {"code": "unknown_category", "message": "no such"}})
            hit = {"id": f"{asked['category']}-{version}", "name": "One", "category": asked["category"], "score": 0.9}
            return httpx.Response(200, json={"category": asked["category"], "hits": [hit], "index_version": version})
        if request.url.path == "/v1/columns":
            return httpx.Response(200, json={"columns": [], "index_version": self.similarity[0]})
        return httpx.Response(404, json={"error": {"code": "not_found", "message": request.url.path}})


@pytest.fixture
def services() -> Reloading:
    return Reloading()


@pytest.fixture
def gateway(services: Reloading, tmp_path: Path) -> Iterator[TestClient]:
    with gateway_over(services.handle, tmp_path, version_wait_s=5) as client:
        yield client


def search(gateway: TestClient, **params: Any) -> Any:
    return gateway.post("/api/v1/search", params=params, files={"image": ("a.jpg", PHOTO, "image/jpeg")})


def test_a_search_names_the_version_its_classification_came_from(gateway: TestClient, services: Reloading) -> None:
    assert search(gateway).status_code == 200
    assert services.searches[0]["index_version"] == "v1"


def test_a_search_between_reloads_waits_for_both_services_and_answers_on_the_new_version(
        gateway: TestClient, services: Reloading) -> None:
    """The classifier reloaded to v2 (which adds lamps), the similarity service not yet: no 422 for `lamp`."""
    services.classifier = ("v2", "model-1")
    services.catch_up_when_asked = True
    answer = search(gateway)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["index_version"] == "v2" and body["category"] == "lamp"
    assert [r["id"] for r in body["results"]] == ["lamp-v2"]
    assert [s["index_version"] for s in services.searches] == ["v2", "v2"]
    assert services.classified == 2, "classified again on the version both serve"


class ReplicasReloading(Reloading):
    """Classifier replicas reloaded one after the other, answering in turn: a search's classifications reach
    an old replica, then (after the readiness of a new one agreed with the similarity service) an old one
    again, then a new one."""

    def __init__(self) -> None:
        super().__init__()
        self.similarity = ("v2", "model-1")
        self.by_classification = ["v1", "v1", "v2"]

    def handle(self, request: httpx.Request) -> httpx.Response:
        on_classifier = str(request.url).startswith(CLASSIFIER)
        if on_classifier and request.url.path == "/readyz":
            self.classifier = ("v2", "model-1")
        elif on_classifier and request.url.path == "/v1/classify":
            self.classifier = (self.by_classification[min(self.classified, 2)], "model-1")
        return super().handle(request)


def test_behind_replicas_reloading_one_by_one_a_search_classifies_again_until_the_versions_agree(
        tmp_path: Path) -> None:
    replicas = ReplicasReloading()
    with gateway_over(replicas.handle, tmp_path, version_wait_s=5) as client:
        answer = search(client)
    assert answer.status_code == 200, answer.text
    assert answer.json()["index_version"] == "v2"
    assert [s["index_version"] for s in replicas.searches] == ["v1", "v1", "v2"]


def test_a_search_whose_services_never_agree_is_a_503_to_try_again(gateway: TestClient, services: Reloading,
                                                                   tmp_path: Path) -> None:
    services.classifier = ("v2", "model-1")
    with gateway_over(services.handle, tmp_path, version_wait_s=0.3) as impatient:
        answer = search(impatient)
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "1"


def test_a_steered_search_after_a_reload_of_the_same_model_classifies_the_kept_photo_again(
        gateway: TestClient, services: Reloading) -> None:
    handle = search(gateway).json()["photo"]
    services.classifier = services.similarity = ("v2", "model-1")
    answer = gateway.post("/api/v1/search", params={"photo": handle})
    assert answer.status_code == 200, answer.text
    assert answer.json()["index_version"] == "v2" and services.classified == 2


def test_a_steered_search_whose_model_no_longer_serves_is_410_photo_expired(
        gateway: TestClient, services: Reloading) -> None:
    handle = search(gateway).json()["photo"]
    services.classifier = services.similarity = ("v2", "model-2")  # re-indexed with other weights
    answer = gateway.post("/api/v1/search", params={"photo": handle})
    assert answer.status_code == 410, answer.text
    assert answer.json()["error"]["code"] == "photo_expired"


def test_once_another_search_saw_the_new_model_a_steered_search_is_410_at_once(
        gateway: TestClient, services: Reloading) -> None:
    handle = search(gateway).json()["photo"]
    services.classifier = services.similarity = ("v2", "model-2")
    assert search(gateway).status_code == 200  # another shopper's photo, on the new model
    searched = len(services.searches)
    answer = gateway.post("/api/v1/search", params={"photo": handle})
    assert answer.status_code == 410 and answer.json()["error"]["code"] == "photo_expired"
    assert len(services.searches) == searched, "refused before any search"
