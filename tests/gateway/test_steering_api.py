"""Steering a photo search by its handle, in process: `httpx.MockTransport` plays both services and counts
the classifier's forward passes and what reaches the similarity service."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from gateway.photo_handles import HANDLE_LENGTH
from lookalike.contracts import encode_embedding
from tests.gateway.mock_services import gateway_over

COLUMNS = {"columns": [{"name": "price", "kind": "number", "products": 3, "min": 10, "max": 900}],
           "index_version": "v1"}
PHOTO = b"\xff\xd8 a small photo"
TOKEN = "operator-token-for-metrics"


class Calls:
    """What the two fake services were asked."""

    def __init__(self) -> None:
        self.classified: list[tuple[bytes, str | None]] = []  # (photo bytes, box)
        self.searches: list[dict[str, object]] = []
        self.columns = 0

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/classify":
            self.classified.append((request.content, request.url.params.get("box")))
            return httpx.Response(200, json={
                "category": "chair", "confidence": 0.7, "probabilities": {"chair": 0.7, "lamp": 0.3},
                "embedding": encode_embedding(np.full(8, len(self.classified), dtype=np.float32)),
                "model": {"weights": "random", "model_id": "m"}, "index_version": "v1", "timings_ms": {}})
        if request.url.path == "/v1/search":
            asked = json.loads(request.content)
            self.searches.append(asked)
            hit = {"id": f"{asked['category']}-1", "name": "One", "category": asked["category"], "score": 0.9}
            return httpx.Response(200, json={"category": asked["category"], "hits": [hit], "index_version": "v1"})
        if request.url.path == "/v1/columns":
            self.columns += 1
            return httpx.Response(200, json=COLUMNS)
        return httpx.Response(404, json={"error": {"code": "not_found", "message": request.url.path}})


@pytest.fixture
def calls() -> Calls:
    return Calls()


@pytest.fixture
def gateway(calls: Calls, tmp_path: Path) -> Iterator[TestClient]:
    with gateway_over(calls.handle, tmp_path, LOOKALIKE_ADMIN_TOKEN=TOKEN) as client:
        yield client


def first_search(gateway: TestClient, **params: object) -> str:
    answer = gateway.post("/api/v1/search", params=params, files={"image": ("a.jpg", PHOTO, "image/jpeg")})
    assert answer.status_code == 200, answer.text
    handle: str = answer.json()["photo"]
    assert len(handle) == HANDLE_LENGTH
    return handle


def steer(gateway: TestClient, handle: str, **params: Any) -> Any:  # TestClient's own httpx Response
    return gateway.post("/api/v1/search", params={"photo": handle, **params})


def error_code(answer: Any, status: int) -> str:
    assert answer.status_code == status, answer.text
    code: str = answer.json()["error"]["code"]
    return code


def test_steering_by_the_handle_searches_again_without_a_forward_pass(gateway: TestClient, calls: Calls) -> None:
    handle = first_search(gateway)
    assert len(calls.classified) == 1
    first_embedding = calls.searches[0]["embedding"]
    steers: list[dict[str, object]] = [{"category": "lamp"}, {"where": "price<=300"}, {"q": "oak"},
                                       {"min_score": 0.5}, {"like": "chair-1", "unlike": "chair-2"}, {"k": 3}]
    for params in steers:
        answer = steer(gateway, handle, **params)
        assert answer.status_code == 200, answer.text
        assert answer.json()["photo"] == handle
    assert len(calls.classified) == 1, "one forward pass for the first search and six steers"
    category, where, words, cutoff, refine, k = calls.searches[1:]
    assert all(s["embedding"] == first_embedding for s in calls.searches)
    assert category["category"] == "lamp" and where["where"] == ["price<=300"] and words["q"] == "oak"
    assert cutoff["min_score"] == 0.5 and (refine["like"], refine["unlike"]) == (["chair-1"], ["chair-2"])
    assert k["k"] == 3 and k["category"] == "chair", "no category named: the classifier's decision, kept"


def test_a_steered_answer_says_what_the_first_one_said(gateway: TestClient) -> None:
    first = gateway.post("/api/v1/search", files={"image": ("a.jpg", PHOTO, "image/jpeg")}).json()
    again = steer(gateway, first["photo"]).json()
    for field in ("category", "confidence", "probabilities", "searched", "results", "weights"):
        assert again[field] == first[field], field
    assert again["timings_ms"]["classify"] == 0, "no forward pass"


def test_a_new_region_needs_one_forward_pass_on_the_kept_photo(gateway: TestClient, calls: Calls) -> None:
    handle = first_search(gateway)
    for _ in range(2):
        assert steer(gateway, handle, box="0,0,0.5,0.5").status_code == 200
    assert steer(gateway, handle).status_code == 200  # the whole photo again: still held
    assert calls.classified == [(PHOTO, None), (PHOTO, "0.0,0.0,0.5,0.5")]
    assert calls.searches[1]["embedding"] != calls.searches[0]["embedding"]
    assert calls.searches[3]["embedding"] == calls.searches[0]["embedding"]


def test_a_handle_with_an_unknown_category_or_bad_words_is_refused_before_anything_runs(gateway: TestClient,
                                                                                        calls: Calls) -> None:
    handle = first_search(gateway)
    assert error_code(steer(gateway, handle, category="moon"), 422) == "unknown_category"
    assert error_code(steer(gateway, handle, q="the"), 422) == "bad_text_query"
    assert len(calls.classified) == 1 and len(calls.searches) == 1


def test_a_steered_filter_costs_no_extra_hop(gateway: TestClient, calls: Calls) -> None:
    """With no upload to spare, the similarity service alone checks `where`, inside the search."""
    handle = first_search(gateway)
    calls.columns = 0
    assert steer(gateway, handle, where="price<=300").status_code == 200
    assert calls.columns == 0 and calls.searches[-1]["where"] == ["price<=300"]


def test_an_unknown_handle_is_410_photo_expired(gateway: TestClient, calls: Calls) -> None:
    first_search(gateway)
    answer = steer(gateway, "A" * HANDLE_LENGTH)
    assert error_code(answer, 410) == "photo_expired"
    assert "send the photo again" in answer.json()["error"]["message"]
    assert len(calls.searches) == 1, "a guessed handle reaches nobody's query"


@pytest.mark.parametrize("handle", ["x", "a" * (HANDLE_LENGTH + 1), "a" * 4000, "%00" * 20,
                                    "a" * (HANDLE_LENGTH - 2) + "..", "<script>" + "a" * (HANDLE_LENGTH - 8)])
def test_a_malformed_handle_is_422_and_never_repeated(gateway: TestClient, handle: str) -> None:
    answer = steer(gateway, handle)
    assert error_code(answer, 422) == "bad_photo_handle"
    assert len(handle) < 8 or handle not in answer.text


def test_an_empty_handle_is_no_handle_so_the_upload_is_searched(gateway: TestClient, calls: Calls) -> None:
    first_search(gateway)
    answer = gateway.post("/api/v1/search", params={"photo": ""},
                          files={"image": ("b.jpg", b"\xff\xd8 another photo", "image/jpeg")})
    assert answer.status_code == 200 and len(calls.searches) == 2, answer.text
    assert steer(gateway, "").status_code == 415  # no handle and no photo: the photo search wants its upload


def test_a_photo_and_a_handle_together_are_refused(gateway: TestClient, calls: Calls) -> None:
    handle = first_search(gateway)
    answer = gateway.post("/api/v1/search", params={"photo": handle},
                          files={"image": ("b.jpg", b"\xff\xd8 another photo", "image/jpeg")})
    assert error_code(answer, 400) == "photo_with_handle"
    assert len(calls.classified) == 1


def test_hits_and_misses_are_counted_on_metrics(gateway: TestClient) -> None:
    handle = first_search(gateway)
    steer(gateway, handle)
    steer(gateway, handle)
    steer(gateway, "B" * HANDLE_LENGTH)
    metrics = gateway.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text
    assert "photo_handle_hits_total 2.0" in metrics
    assert "photo_handle_misses_total 1.0" in metrics
    assert "photo_handles 1.0" in metrics
    assert 'photo_handle_evictions_total{reason="full"} 0.0' in metrics


def test_an_expired_handle_is_gone(calls: Calls, tmp_path: Path) -> None:
    with gateway_over(calls.handle, tmp_path, photo_handle_ttl_s=0.001) as gateway:
        handle = first_search(gateway)
        time.sleep(0.01)
        assert error_code(steer(gateway, handle), 410) == "photo_expired"
        assert error_code(steer(gateway, handle), 410) == "photo_expired"
