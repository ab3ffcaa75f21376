"""Refining a photo search with like= and unlike=, end to end: three real processes, real photos, real Faiss.

With `random` weights every embedding lies within cos 0.998 of the others, so these tests check
what Rocchio's rule guarantees (the order moves toward a liked product, an unliked one is gone),
not that the results look right.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import Services

pytestmark = pytest.mark.usefixtures("services")


def search(services: Services, photo: Path, **params: Any) -> httpx.Response:
    return httpx.post(f"{services.gateway}/api/v1/search", params={"category": "chair", "k": 6, **params},
                      files={"image": (photo.name, photo.read_bytes(), "image/jpeg")}, timeout=60)


def ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [r["id"] for r in response.json()["results"]]


@pytest.fixture(scope="module")
def photo(query_photos: list[tuple[Path, str]]) -> Path:
    return next(p for p, category in query_photos if category == "chair")


def test_a_like_reaches_the_similarity_service_and_lifts_the_liked_product(services: Services, photo: Path) -> None:
    """With default weights and `random` embeddings the move is about 1e-4 in score (see
    tests/similarity_service/test_refine.py for the rule and its direction); here: the like arrives."""
    plain = {r["id"]: r["score"] for r in search(services, photo).json()["results"]}
    order = sorted(plain, key=lambda i: -plain[i])
    liked = order[-1]
    refined_response = search(services, photo, like=liked)
    refined = {r["id"]: r["score"] for r in refined_response.json()["results"]}
    assert ids(refined_response).index(liked) <= order.index(liked)
    assert refined != plain and set(refined) == set(plain)


def test_an_unliked_product_never_comes_back(services: Services, photo: Path) -> None:
    plain = ids(search(services, photo))
    refined = ids(search(services, photo, unlike=plain[0]))
    # Its variant group leaves with it (one result stands for a group): every other group comes back.
    assert plain[0] not in refined and len(refined) == len(plain) - 1
    both = ids(search(services, photo, like=plain[2], unlike=[plain[0], plain[1]]))
    assert not {plain[0], plain[1]} & set(both)


def test_an_unknown_product_or_too_many_marks_is_a_422(services: Services, photo: Path) -> None:
    unknown = search(services, photo, like="no-such-product")
    assert unknown.status_code == 422 and unknown.json()["error"]["code"] == "not_in_catalog"
    too_many = search(services, photo, unlike=[f"x{i}" for i in range(21)])
    assert too_many.status_code == 422 and "20" in too_many.json()["error"]["message"]


def test_a_text_search_is_refined_by_marks_too_and_leaves_the_unliked_out(services: Services) -> None:
    def text(**params: Any) -> httpx.Response:
        return httpx.get(f"{services.gateway}/api/v1/search/text", params={"q": "chair", "k": 6, **params}, timeout=60)

    plain = text()
    assert plain.json()["refined"] is False
    refined = text(like=ids(plain)[1], unlike=ids(plain)[0])
    assert refined.json()["refined"] is True and ids(plain)[0] not in ids(refined)
    assert all(r["category"] == "chair" for r in refined.json()["results"])
    unknown = text(unlike="no-such-product")
    assert unknown.status_code == 422 and unknown.json()["error"]["code"] == "not_in_catalog"
