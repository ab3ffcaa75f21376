"""The Milvus vector store answers exactly as the Faiss one: same catalogue, same queries, same top 10.

A real Milvus standalone runs on loopback (see `milvus_server` in tests/conftest.py); the same
catalogue is indexed into both stores with flat (exact) indexes, and every kind of search the
similarity service makes is compared: plain, `where`, `min_score`, words, refinement, more like
this. Random weights: the scores lie close together, which makes the order comparison strict.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from lookalike.catalog import milvus_store
from lookalike.catalog.index import CatalogIndex
from lookalike.catalog.layout import IndexLayout
from lookalike.catalog.milvus_store import MilvusConnection, collection_name, filter_expression, string_literal
from lookalike.catalog.refine import RocchioWeights, rocchio
from lookalike.contracts import Hit
from lookalike.errors import BadFilter, IndexMismatch, UnknownColumn
from lookalike.settings import VectorStoreSettings
from lookalike.vision.embedder import Embedder
from lookalike.vision.preprocess import to_model_input
from lookalike.where import Filter

QUERIES = 20


def milvus_settings(uri: str) -> VectorStoreSettings:
    return VectorStoreSettings(vector_store="milvus", milvus_uri=uri)


@pytest.fixture(scope="module")
def connection(milvus_server: Any) -> Iterator[MilvusConnection]:
    connection = MilvusConnection(milvus_server.uri)
    yield connection
    connection.close()


@pytest.fixture(scope="module")
def both(priced_catalog: Path, milvus_server: Any, connection: MilvusConnection,
         tmp_path_factory: pytest.TempPathFactory) -> tuple[CatalogIndex, CatalogIndex]:
    from indexing.build import BuildPlan, build_index

    faiss_root, milvus_root = tmp_path_factory.mktemp("faiss-index"), tmp_path_factory.mktemp("milvus-index")
    build_index(BuildPlan(priced_catalog, faiss_root, "random", precision="fp32"))
    build_index(BuildPlan(priced_catalog, milvus_root, "random", precision="fp32",
                          vector_store=milvus_settings(milvus_server.uri)))
    faiss = CatalogIndex.load(IndexLayout(faiss_root).require_current())
    milvus = CatalogIndex.load(IndexLayout(milvus_root).require_current(), open_vectors=milvus_store.opener(connection))
    return faiss, milvus


@pytest.fixture(scope="module")
def queries(shared: Path, query_photos: list[tuple[Path, str]]) -> list[tuple[np.ndarray, str]]:
    """Twenty real query photos, embedded by the same random-weights model, with their categories."""
    embedder = Embedder("random", "fp32")
    picked = query_photos[:: max(1, len(query_photos) // QUERIES)][:QUERIES]
    images = [to_model_input(Image.open(path).convert("RGB"), embedder.preprocessing) for path, _ in picked]
    return list(zip(embedder.embed_batch(images), [category for _, category in picked]))


def same(faiss_hits: list[Hit], milvus_hits: list[Hit]) -> None:
    assert [h.id for h in milvus_hits] == [h.id for h in faiss_hits]
    assert np.allclose([h.score for h in milvus_hits], [h.score for h in faiss_hits], atol=1e-4)


def test_a_version_published_to_milvus_keeps_no_faiss_files_and_names_its_collection(
        both: tuple[CatalogIndex, CatalogIndex], connection: MilvusConnection) -> None:
    _, milvus = both
    store = milvus.manifest.vector_store
    assert store is not None and store.kind == "milvus" and store.collection == collection_name(milvus.version)
    assert not (milvus.version_dir / "indexes").exists()
    assert connection.client.has_collection(store.collection)


def test_the_same_catalogue_gives_the_same_top_10_in_both_stores(both: tuple[CatalogIndex, CatalogIndex],
                                                                 queries: list[tuple[np.ndarray, str]]) -> None:
    faiss, milvus = both
    for vector, category in queries:
        same(faiss.search(category, vector, 10), milvus.search(category, vector, 10))


@pytest.mark.parametrize("where", [
    ["price<=600"], ["price>400", "colour=red"], ["price=on request"], ["price!=211"], ['colour=oak "natural"'],
    ["colour=black\\white"], ["colour!=red"], ["colour>m"], ["colour<=red"],
])
def test_filters_agree_across_stores(both: tuple[CatalogIndex, CatalogIndex], queries: list[tuple[np.ndarray, str]],
                                     where: list[str]) -> None:
    faiss, milvus = both
    for vector, category in queries[:8]:
        same(faiss.search(category, vector, 10, where=where), milvus.search(category, vector, 10, where=where))


def test_min_score_words_and_exclusions_agree_across_stores(both: tuple[CatalogIndex, CatalogIndex],
                                                            queries: list[tuple[np.ndarray, str]]) -> None:
    faiss, milvus = both
    for vector, category in queries[:8]:
        plain = faiss.search(category, vector, 10)
        # A cutoff between two results, clear of both: the stores round the last digit differently.
        gaps = [n for n in range(len(plain) - 1) if plain[n].score - plain[n + 1].score > 2e-5]
        cutoff = (plain[gaps[len(gaps) // 2]].score + plain[gaps[len(gaps) // 2] + 1].score) / 2 if gaps else 0.0
        same(faiss.search(category, vector, 10, min_score=cutoff), milvus.search(category, vector, 10, min_score=cutoff))
        same(faiss.search(category, vector, 10, q=category), milvus.search(category, vector, 10, q=category))
        left_out = frozenset({plain[0].id})
        same(faiss.search(category, vector, 10, left_out), milvus.search(category, vector, 10, left_out))
        groups = frozenset({plain[1].group_id or plain[1].id})
        same(faiss.search(category, vector, 10, exclude_groups=groups),
             milvus.search(category, vector, 10, exclude_groups=groups))


def test_refinement_and_more_like_this_agree_across_stores(both: tuple[CatalogIndex, CatalogIndex],
                                                           queries: list[tuple[np.ndarray, str]]) -> None:
    faiss, milvus = both
    weights = RocchioWeights(alpha=1.0, beta=0.75, gamma=0.25)
    for vector, category in queries[:6]:
        plain = faiss.search(category, vector, 10)
        like, unlike = [plain[2].id], [plain[0].id]
        assert np.allclose(milvus.product_vectors(like), faiss.product_vectors(like), atol=1e-6)
        moved = {name: rocchio(vector, c.product_vectors(like), c.product_vectors(unlike), weights)
                 for name, c in (("faiss", faiss), ("milvus", milvus))}
        same(faiss.search(category, moved["faiss"], 10, frozenset(unlike)),
             milvus.search(category, moved["milvus"], 10, frozenset(unlike)))
        same(faiss.similar_to(plain[0].id, 10), milvus.similar_to(plain[0].id, 10))


@pytest.mark.parametrize("value", [
    'red" or category != "', "red' or 1==1 or '", "\\", '\\"', "red\\\" or true or \\\"", "x" * 5000,
    'a\nb', "1 == 1 or", "category in [\"chair\"]", "é ünïcödé 椅子",
])
def test_hostile_filter_values_match_literally_and_never_become_expression_syntax(
        both: tuple[CatalogIndex, CatalogIndex], queries: list[tuple[np.ndarray, str]], value: str) -> None:
    faiss, milvus = both
    vector, category = queries[0]
    for op in ("=", "!="):
        where = [f"colour{op}{value}"]
        try:
            expected = faiss.search(category, vector, 10, where=where)
        except BadFilter as refused:  # not column<op>value at all: refused the same way, before any engine
            with pytest.raises(BadFilter, match=re.escape(refused.message)):
                milvus.search(category, vector, 10, where=where)
            continue
        same(expected, milvus.search(category, vector, 10, where=where))


def test_an_unknown_column_is_refused_before_milvus_is_asked(both: tuple[CatalogIndex, CatalogIndex],
                                                             queries: list[tuple[np.ndarray, str]]) -> None:
    _, milvus = both
    vector, category = queries[0]
    with pytest.raises(UnknownColumn):
        milvus.search(category, vector, 10, where=["category=chair"])


def test_a_string_value_is_one_literal_whatever_it_holds() -> None:
    assert string_literal('a"b') == '"a\\"b"'
    assert string_literal("a\\") == '"a\\\\"'
    assert string_literal("line\nbreak") == '"line\\u000abreak"'
    fields = milvus_store.ColumnFields("c0_text", "c0_number", "c0_is_number")
    expression = filter_expression(Filter("colour", "=", 'x" or true or "', None), fields)
    assert expression == '(c0_text == "x\\" or true or \\"" and c0_text != "")'


def test_a_faiss_service_refuses_a_milvus_version_and_a_milvus_service_a_faiss_one(
        both: tuple[CatalogIndex, CatalogIndex], connection: MilvusConnection) -> None:
    faiss, milvus = both
    with pytest.raises(IndexMismatch, match="VECTOR_STORE=milvus"):
        CatalogIndex.load(milvus.version_dir)
    with pytest.raises(IndexMismatch, match="Faiss files"):
        CatalogIndex.load(faiss.version_dir, open_vectors=milvus_store.opener(connection))
