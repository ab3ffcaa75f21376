"""Search by words, and a photo narrowed by words, end to end: real services, real photos, real FTS5, real Faiss.

The weights are `random`: words are ranked by bm25 over the catalogue's own text, which random
weights do not touch; the photo's part of a narrowed search means nothing, but what it may return does.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.gateway.text_catalog import rows_of, serving, text_catalog
from tests.support import Services


@pytest.fixture(scope="module")
def catalog(shared: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return text_catalog(shared, tmp_path_factory.mktemp("text-catalog"))


@pytest.fixture(scope="module")
def stack(catalog: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    with serving(catalog, tmp_path_factory, "text") as services:
        yield services


def text(stack: Services, q: str, **params: Any) -> httpx.Response:
    return httpx.get(f"{stack.gateway}/api/v1/search/text", params={"q": q, **params}, timeout=30)


def photo_search(stack: Services, photo: Path, **params: object) -> httpx.Response:
    return httpx.post(f"{stack.gateway}/api/v1/search", params=params, timeout=60,
                      files={"image": (photo.name, photo.read_bytes(), "image/jpeg")})


def test_the_exact_name_of_a_product_returns_it_first(stack: Services, catalog: Path) -> None:
    row = next(r for r in rows_of(catalog) if r["category"] == "lamp")
    response = text(stack, row["name"])
    assert response.status_code == 200, response.text
    body = response.json()
    first = body["results"][0]
    assert first["name"] == row["name"] and "name" in first["matched"]
    assert 0 < first["score"] <= 1 and first["image_url"].startswith("/api/v1/items/")
    assert {"q", "category", "results", "index_version", "timings_ms"} <= set(body)


def test_poang_without_its_umlaut_finds_poang(stack: Services, catalog: Path) -> None:
    results = text(stack, "poang").json()["results"]
    assert results and all("POÄNG" in r["name"] for r in results)
    poang = [r for r in rows_of(catalog) if "POÄNG" in r["name"]]
    assert len(results) == len({r["item_group_id"] or r["id"] for r in poang})  # one result per variant group


def test_couch_returns_sofas_through_the_synonyms(stack: Services) -> None:
    results = text(stack, "couch").json()["results"]
    assert any(r["category"] == "sofa" for r in results)
    assert all("sofa" in r["name"].lower() or r["category"] == "sofa" for r in results)


def test_category_and_k_narrow_a_text_search(stack: Services) -> None:
    results = text(stack, "chair", category="chair", k=3).json()["results"]
    assert len(results) == 3 and {r["category"] for r in results} == {"chair"}
    assert text(stack, "chair", category="wardrobe").status_code == 422


@pytest.mark.parametrize("q", ['"', "NEAR(", "*", "x" * 10_000, "sofa\x00\x01\x1b[2J", "NEAR(sofa bed, 2)",
                               'sofa" OR "bed', "name:sofa", "-sofa", "sofa*", "(", "", " ", "the of with"])
def test_hostile_queries_get_a_200_or_a_422_never_a_5xx(stack: Services, catalog: Path, q: str) -> None:
    response = text(stack, q)
    assert response.status_code in (200, 422), response.text
    if response.status_code == 422:
        assert response.json()["error"]["message"]
    photo = catalog / rows_of(catalog)[0]["file"]
    assert photo_search(stack, photo, q=q, category="chair").status_code in (200, 422)


def test_an_empty_long_or_stop_word_query_is_a_422_that_says_why(stack: Services) -> None:
    for q, says in [("", "Type some words"), ("x" * 201, "at most 200"), ("the with", "no word")]:
        response = text(stack, q)
        assert response.status_code == 422
        assert response.json()["error"]["code"] == "bad_text_query" and says in response.json()["error"]["message"]


def test_a_photo_narrowed_by_words_returns_only_matching_products_by_similarity(stack: Services,
                                                                                 catalog: Path) -> None:
    photo = catalog / next(r for r in rows_of(catalog) if r["category"] == "chair" and "POÄNG" not in r["name"])["file"]
    narrowed = photo_search(stack, photo, q="poang", category="chair", k=10).json()
    assert narrowed["q"] == "poang"
    assert narrowed["results"] and all("POÄNG" in r["name"] for r in narrowed["results"])
    plain = photo_search(stack, photo, category="chair", k=100).json()
    assert plain["q"] is None
    expected = [r["id"] for r in plain["results"] if "POÄNG" in r["name"]]
    assert [r["id"] for r in narrowed["results"]] == expected  # the photo's own ranking, only matching products
    assert [r["score"] for r in narrowed["results"]] == pytest.approx(
        [r["score"] for r in plain["results"] if "POÄNG" in r["name"]], abs=1e-5)


def test_without_words_a_photo_gets_its_plain_neighbours(stack: Services, catalog: Path) -> None:
    photo = catalog / rows_of(catalog)[0]["file"]
    plain = photo_search(stack, photo, category="chair", k=5).json()
    blank = photo_search(stack, photo, category="chair", k=5, q="").json()
    assert [r["id"] for r in plain["results"]] == [r["id"] for r in blank["results"]]
    assert plain["results"][0]["id"] == rows_of(catalog)[0]["id"] and len(plain["results"]) == 5


def test_words_that_match_nothing_in_the_category_give_no_results_not_an_error(stack: Services,
                                                                                catalog: Path) -> None:
    photo = catalog / rows_of(catalog)[0]["file"]
    response = photo_search(stack, photo, category="chair", q="klippan")
    assert response.status_code == 200 and response.json()["results"] == []
