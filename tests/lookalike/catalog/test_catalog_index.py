"""Faiss search by category: cosine scores, items by label, a loaded version answers whole."""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np
import pytest

from lookalike.catalog.faiss_store import CategoryIndex, check_index_type
from lookalike.catalog.index import CatalogIndex
from lookalike.catalog.layout import IndexLayout
from lookalike.catalog.manifest import CatalogItem
from lookalike.errors import NotReady, UnknownCategory, UnknownItem, UnusableIndexType, WrongDimension
from lookalike.served_version import ServedVersion


def unit_vectors(n: int, dim: int = 32, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_a_stored_vector_finds_itself_first_with_cosine_one() -> None:
    vectors = unit_vectors(50)
    index = CategoryIndex.build(vectors, np.arange(100, 150))
    hits = index.search(vectors[7], k=5)
    assert hits[0][0] == 107 and hits[0][1] == pytest.approx(1.0, abs=1e-5)
    assert [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)


def test_k_larger_than_the_category_returns_everything() -> None:
    assert len(CategoryIndex.build(unit_vectors(3), np.arange(3)).search(unit_vectors(1)[0], k=10)) == 3


def test_stored_vectors_come_back_for_more_like_this() -> None:
    vectors = unit_vectors(5)
    np.testing.assert_allclose(CategoryIndex.build(vectors, np.arange(10, 15)).vector(12), vectors[2])


def test_an_approximate_index_type_can_be_chosen_by_factory_string() -> None:
    vectors = unit_vectors(300)
    index = CategoryIndex.build(vectors, np.arange(300), "HNSW32")
    assert index.search(vectors[3], 1)[0][0] == 3


def recall_at_10(index: CategoryIndex, vectors: np.ndarray, queries: np.ndarray) -> float:
    exact = CategoryIndex.build(vectors, np.arange(len(vectors)))
    found = [len({label for label, _ in index.search(q, 10)} & {label for label, _ in exact.search(q, 10)})
             for q in queries]
    return sum(found) / (10 * len(queries))


def test_an_ivf_index_is_saved_with_an_nprobe_that_keeps_recall_high(tmp_path: Path) -> None:
    vectors, queries = unit_vectors(4000, 64), unit_vectors(50, 64, seed=1)
    built = CategoryIndex.build(vectors, np.arange(4000), "IVF64,Flat")
    assert built.search_parameters == {"nprobe": 16}  # Faiss's own default is 1
    built.save(tmp_path / "ivf.faiss")
    loaded = CategoryIndex.load(tmp_path / "ivf.faiss")
    assert faiss.extract_index_ivf(loaded.index).nprobe == 16
    assert recall_at_10(loaded, vectors, queries) >= 0.6
    faiss.extract_index_ivf(loaded.index).nprobe = 1
    assert recall_at_10(loaded, vectors, queries) < 0.2  # what serving with the default would give


def test_an_hnsw_index_searches_wider_than_faiss_default() -> None:
    assert CategoryIndex.build(unit_vectors(300), np.arange(300), "HNSW32").search_parameters == {"efSearch": 64}


def test_saved_and_loaded_indexes_answer_the_same(tmp_path: Path) -> None:
    vectors = unit_vectors(20)
    CategoryIndex.build(vectors, np.arange(20)).save(tmp_path / "x.faiss")
    assert CategoryIndex.load(tmp_path / "x.faiss").search(vectors[4], 3)[0][0] == 4


@pytest.fixture(scope="module")
def catalog(built_index: Path) -> CatalogIndex:
    version_dir = IndexLayout(built_index).current()
    assert version_dir is not None
    return CatalogIndex.load(version_dir)


def test_a_built_catalogue_searches_within_the_category_asked(catalog: CatalogIndex) -> None:
    item = next(iter(catalog.items.values()))
    vector = catalog.categories[item.category].vector(item.label)
    hits = catalog.search(item.category, vector, k=3)
    assert hits[0].id == item.id and hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert {h.category for h in hits} == {item.category}


def test_more_like_this_leaves_the_item_itself_out(catalog: CatalogIndex) -> None:
    item = next(iter(catalog.items.values()))
    hits = catalog.similar_to(item.id, k=3)
    assert item.id not in {h.id for h in hits} and len(hits) == 3


def test_unknown_categories_items_and_dimensions_are_clear_errors(catalog: CatalogIndex) -> None:
    with pytest.raises(UnknownCategory, match="The catalogue has: bed, chair"):
        catalog.search("wardrobe", np.zeros(2048, np.float32), 3)
    with pytest.raises(UnknownItem):
        catalog.item("../../etc/passwd")
    with pytest.raises(WrongDimension):
        catalog.search("bed", np.zeros(10, np.float32), 3)


def test_without_an_index_the_service_is_not_ready_and_says_how_to_build_one(tmp_path: Path) -> None:
    serving = ServedVersion(tmp_path / "none", CatalogIndex.load, "similarity")
    with pytest.raises(NotReady):
        serving.reload()
    assert "make index" in (serving.not_ready_reason or "")
    with pytest.raises(NotReady):
        serving.require()


def test_a_category_too_small_to_train_an_ivf_index_is_searched_exactly() -> None:
    vectors = unit_vectors(40)
    index = CategoryIndex.build(vectors, np.arange(40), "IVF256,Flat")
    assert index.factory == "Flat"
    assert index.search(vectors[5], 1)[0][0] == 5


def test_an_unusable_index_type_is_refused_with_examples() -> None:
    with pytest.raises(UnusableIndexType, match="try Flat, HNSW32"):
        check_index_type("NoSuchIndex99", 2048)
    check_index_type("IVF256,Flat", 2048)


def test_a_selector_filters_inside_every_index_type_and_k_come_back_from_a_small_allowed_set() -> None:
    vectors = unit_vectors(4000)
    allowed = np.arange(0, 4000, 100)  # 1%
    for factory in ("Flat", "IVF64,Flat", "HNSW32"):
        found = CategoryIndex.build(vectors, np.arange(4000), factory).search(vectors[7], 10, allowed)
        assert len(found) == 10 and {label for label, _ in found} <= set(allowed.tolist()), factory


def test_several_query_rows_score_each_label_by_its_best_row() -> None:
    vectors = unit_vectors(50)
    found = dict(CategoryIndex.build(vectors, np.arange(50)).search(vectors[[3, 9]], 5))
    assert found[3] == pytest.approx(1.0, abs=1e-5) and found[9] == pytest.approx(1.0, abs=1e-5)


def photos(products: list[tuple[str, str | None]], per_product: int = 2) -> list[CatalogItem]:
    return [CatalogItem(label=per_product * n + i, id=product, category="chair", name=product,
                        file=f"chair/{product}-{i}.jpg", group_id=group, extra={"price": str(10 * (n + 1))})
            for n, (product, group) in enumerate(products) for i in range(per_product)]


def test_a_search_returns_product_groups_represented_by_their_best_photo(catalog: CatalogIndex) -> None:
    items = photos([("a", "ab"), ("b", "ab"), ("c", None), ("d", None), ("e", None)])
    vectors = unit_vectors(len(items))
    grouped = CatalogIndex.of(catalog.manifest, catalog.version_dir, items,
                              {"chair": CategoryIndex.build(vectors, np.arange(len(items)))})
    hits = grouped.search("chair", vectors[5], k=10)  # the second photo of product c
    assert hits[0].id == "c" and hits[0].photo == 1 and hits[0].photos == 2
    assert [h.group_id for h in hits].count("ab") == 1 and len(hits) == 4
    assert next(h for h in hits if h.group_id == "ab").variants == 2
    assert len(grouped.search("chair", vectors[5], k=2)) == 2
    assert {h.id for h in grouped.similar_to("a", 10)} == {"c", "d", "e"}  # its variant b is left out too
    assert [h.id for h in grouped.search("chair", vectors[5], k=10, where=["price>=40"])] in (["d", "e"], ["e", "d"])
    assert [h.id for h in grouped.search("chair", vectors[5], k=10, min_score=0.9999)] == ["c"]
