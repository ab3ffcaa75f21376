"""Rocchio's rule, and the products' vectors it reads from a real built index."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from lookalike.catalog.index import CatalogIndex
from lookalike.catalog.layout import IndexLayout
from lookalike.catalog.refine import RocchioWeights, rocchio
from lookalike.contracts import encode_embedding
from lookalike.errors import NotInCatalog, WrongDimension
from similarity_service.app import create_app
from similarity_service.settings import SimilaritySettings

AXES = np.eye(3, dtype=np.float32)
NONE = np.zeros((0, 3), dtype=np.float32)


def test_the_query_moves_toward_the_liked_mean_and_away_from_the_unliked() -> None:
    moved = rocchio(AXES[0], AXES[1:2], AXES[2:3], RocchioWeights(alpha=1, beta=0.75, gamma=0.25))
    expected = np.array([1, 0.75, -0.25]) / np.linalg.norm([1, 0.75, -0.25])
    assert moved == pytest.approx(expected, abs=1e-6)
    assert float(np.linalg.norm(moved)) == pytest.approx(1.0)


def test_several_liked_products_count_as_their_mean() -> None:
    moved = rocchio(AXES[0], AXES[1:3], NONE, RocchioWeights(alpha=1, beta=1, gamma=0))
    assert moved == pytest.approx(np.array([1, 0.5, 0.5]) / np.linalg.norm([1, 0.5, 0.5]), abs=1e-6)


def test_no_marks_or_marks_that_cancel_the_query_leave_it_as_it_was() -> None:
    assert rocchio(AXES[0], NONE, NONE) == pytest.approx(AXES[0])
    assert rocchio(AXES[0], NONE, AXES[0:1], RocchioWeights(alpha=1, beta=0, gamma=1)) == pytest.approx(AXES[0])


def test_a_query_of_another_dimension_is_a_clear_error() -> None:
    with pytest.raises(WrongDimension):
        rocchio(np.ones(4, dtype=np.float32), AXES[1:2], NONE)


@pytest.fixture(scope="module")
def catalog(built_index: Path) -> CatalogIndex:
    return CatalogIndex.load(IndexLayout(built_index).require_current())


def test_a_product_with_several_photos_is_their_normalised_mean(catalog: CatalogIndex) -> None:
    first, second = sorted(catalog.items.values(), key=lambda i: i.label)[:2]
    products = dataclasses.replace(catalog.products, photos={**catalog.products.photos, "pair": [first, second]})
    two_photos = dataclasses.replace(catalog, products=products)
    mean = catalog.categories[first.category].vector(first.label) + catalog.categories[second.category].vector(second.label)
    assert two_photos.product_vectors(["pair"])[0] == pytest.approx(mean / np.linalg.norm(mean), abs=1e-5)


def test_an_unknown_product_is_a_422(catalog: CatalogIndex) -> None:
    with pytest.raises(NotInCatalog) as refused:
        catalog.product_vectors(["no-such-product"])
    assert refused.value.status == 422
    assert catalog.product_vectors([]).shape == (0, next(iter(catalog.categories.values())).dim)


def search(client: TestClient, vector: np.ndarray, **marks: list[str]) -> list[tuple[str, float]]:
    response = client.post("/v1/search", json={"embedding": encode_embedding(vector), "category": "chair", "k": 6,
                                               **marks})
    assert response.status_code == 200, response.text
    return [(hit["id"], hit["score"]) for hit in response.json()["hits"]]


@contextmanager
def similarity(built_index: Path, **weights: float) -> Iterator[TestClient]:
    with TestClient(create_app(SimilaritySettings(index=built_index, **weights))) as client:
        yield client


def test_the_service_moves_the_query_by_the_rule_with_the_products_stored_vectors(
        built_index: Path, catalog: CatalogIndex) -> None:
    chairs = sorted(p for p, photos in catalog.products.photos.items() if photos[0].category == "chair")
    query = catalog.product_vectors([chairs[0]])[0]
    liked, unliked = catalog.product_vectors([chairs[3]]), catalog.product_vectors([chairs[1]])
    expected = rocchio(query, liked, unliked)
    with similarity(built_index) as client:
        hits = search(client, query, like=[chairs[3]], unlike=[chairs[1]])
    vectors = dict(zip(chairs, catalog.product_vectors(chairs)))
    assert chairs[1] not in dict(hits)
    assert [score for _, score in hits] == pytest.approx([float(vectors[i] @ expected) for i, _ in hits], abs=1e-5)


def test_a_like_that_outweighs_the_photo_brings_the_liked_product_and_its_neighbours_first(
        built_index: Path, catalog: CatalogIndex) -> None:
    """With `random` weights all chairs lie within cos 0.9992 of each other, so the default beta of 0.75
    moves scores by 1e-4; a beta of 20 makes the like dominate, which shows the direction of the move."""
    chairs = sorted(p for p, photos in catalog.products.photos.items() if photos[0].category == "chair")
    query, liked = catalog.product_vectors([chairs[0]])[0], chairs[4]
    with similarity(built_index, rocchio_beta=20) as client:
        plain = [i for i, _ in search(client, query)]
        refined = [i for i, _ in search(client, query, like=[liked])]
    neighbours = [hit.id for hit in catalog.search("chair", catalog.product_vectors([liked])[0], 3)]
    assert refined[0] == liked and set(refined[:3]) == set(neighbours)
    assert plain[0] == chairs[0] and plain != refined


def test_refined_words_start_from_the_mean_of_their_top_products_and_move_by_the_rule(catalog: CatalogIndex) -> None:
    top = [hit.id for hit in catalog.text_search("chair", 6)]
    liked, unliked = top[3], top[0]
    start = catalog.product_vectors(top).mean(axis=0)
    expected = rocchio(start, catalog.product_vectors([liked]), catalog.product_vectors([unliked]))
    hits = catalog.refine_text("chair", 6, [liked], [unliked], RocchioWeights())
    # A result stands for a variant group, and the unliked product's group leaves with it.
    groups = {photos[0].group for photos in catalog.products.photos.values() if photos[0].category == "chair"}
    assert unliked not in {hit.id for hit in hits} and len(hits) == min(6, len(groups) - 1)
    vectors = dict(zip([hit.id for hit in hits], catalog.product_vectors([hit.id for hit in hits])))
    assert [hit.score for hit in hits] == pytest.approx([float(vectors[h.id] @ expected) for h in hits], abs=1e-5)
    assert [hit.score for hit in hits] == sorted((hit.score for hit in hits), reverse=True)


def test_words_the_catalogue_lacks_start_from_the_liked_products_alone(catalog: CatalogIndex) -> None:
    assert catalog.text_search("nursery", 6) == []
    lamp = sorted(p for p, photos in catalog.products.photos.items() if photos[0].category == "lamp")[2]
    hits = catalog.refine_text("nursery", 6, [lamp], [], RocchioWeights())
    assert hits[0].id == lamp and hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert {hit.category for hit in hits} == {"lamp"}
    assert catalog.refine_text("nursery", 6, [], [lamp], RocchioWeights()) == []  # nothing to move from


def test_the_service_refines_words_by_marks_and_says_so(built_index: Path, catalog: CatalogIndex) -> None:
    top = [hit.id for hit in catalog.text_search("chair", 6)]
    with similarity(built_index) as client:
        plain = client.get("/v1/search/text", params={"q": "chair", "k": 6}).json()
        refined = client.get("/v1/search/text", params={"q": "chair", "k": 6, "like": top[2], "unlike": top[0]})
        unknown = client.get("/v1/search/text", params={"q": "chair", "like": "no-such-product"})
        too_many = client.get("/v1/search/text", params={"q": "chair", "unlike": [f"x{i}" for i in range(21)]})
    assert plain["refined"] is False and refined.json()["refined"] is True
    assert top[0] not in [hit["id"] for hit in refined.json()["hits"]]
    assert unknown.status_code == 422 and unknown.json()["error"]["code"] == "not_in_catalog"
    assert too_many.status_code == 422
