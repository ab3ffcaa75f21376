"""Words found by bm25 and by meaning, fused: the real all-MiniLM-L6-v2 (offline) over real product names.

The catalogue is a slice of the demo's products.csv; no photo is read (the Faiss side holds
random vectors, which only the photo search narrowed by words uses).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from lookalike.catalog.faiss_store import CategoryIndex
from lookalike.catalog.hybrid import MEANING, Fusion, Meaning
from lookalike.catalog.index import CatalogIndex
from lookalike.catalog.layout import TEXT_INDEX, TEXT_VECTORS
from lookalike.catalog.manifest import CatalogItem, CategoryStats, HeadStats, Manifest, Preprocessing
from lookalike.catalog.text_embedding import TextEmbedder, TextModelIdentity, TextModels, item_text
from lookalike.catalog.text_index import TextIndex, text_fields, write_text_index
from lookalike.contracts import ModelInfo, TextModelInfo
from lookalike.errors import BadTextQuery, TextModelMismatch
from tests.support import demo_rows

PER_CATEGORY = 15
ALSO = ("POÄNG armchair", "STRANDMON wing chair", "HEKTAR floor lamp")
WALL_LAMPS = ("SNÖIG wall lamp", "SKOJIG wall lamp")  # what a sconce is; the first lamps of the csv hold none


def demo_items(shared: Path) -> list[CatalogItem]:
    """The first products of each category, and a few named ones, as the indexing job lists them."""
    rows = demo_rows(shared)
    chosen: list[dict[str, str]] = []
    for category in ("bed", "chair", "lamp", "sofa", "table"):
        chosen += [r for r in rows if r["category"] == category][:PER_CATEGORY]
    chosen += [r for r in rows if r["name"] in ALSO + WALL_LAMPS and r not in chosen]
    return [CatalogItem(label=at, id=r["id"], category=r["category"], name=r["name"], file=r["file"],
                        group_id=r["item_group_id"] or None) for at, r in enumerate(chosen)]


def manifest(model: TextModelInfo | None, categories: list[str]) -> Manifest:
    return Manifest(version="test", created_at=datetime.now(UTC), model=ModelInfo(weights="random", model_id="r"),
                    preprocessing=Preprocessing(), embedding_dim=8, categories=[CategoryStats(name=c, items=1)
                                                                                for c in categories],
                    head=HeadStats(cv_accuracy=None, folds=0, train_items=0), catalog="demo", text_model=model)


def served(model: TextEmbedder) -> TextModels:
    """What a similarity service whose TEXT_MODEL is `model`'s source holds."""
    return TextModels(TextModelIdentity(model.info.name, model.info.digest))


def catalogue(version_dir: Path, items: list[CatalogItem], meaning: Meaning | None) -> CatalogIndex:
    text = TextIndex.load(version_dir)
    assert text is not None
    vectors = np.random.default_rng(0).normal(size=(len(items), 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    names = sorted({i.category for i in items})
    labels = {c: np.array([i.label for i in items if i.category == c]) for c in names}
    categories = {c: CategoryIndex.build(vectors[labels[c]], labels[c]) for c in names}
    model = meaning.embedder.info if meaning else None
    return CatalogIndex.of(manifest(model, names), version_dir, items, categories, text, meaning)


@pytest.fixture(scope="module")
def demo(shared: Path, text_model: TextEmbedder,
         tmp_path_factory: pytest.TempPathFactory) -> tuple[CatalogIndex, CatalogIndex]:
    """(hybrid, bm25 alone) over the same version folder."""
    version_dir = tmp_path_factory.mktemp("version")
    items = demo_items(shared)
    fields = text_fields(items)
    write_text_index(version_dir / TEXT_INDEX, items, fields)
    np.save(version_dir / TEXT_VECTORS, text_model.embed_texts([item_text(i, fields, {}) for i in items]))
    meaning = Meaning.of(version_dir, manifest(text_model.info, []), text_model, Fusion())
    return catalogue(version_dir, items, meaning), catalogue(version_dir, items, None)


@pytest.mark.parametrize(("word", "category"), [("chesterfield", "sofa"), ("sconce", "lamp"), ("headboard", "bed")])
def test_a_word_in_no_product_name_finds_its_category_by_meaning(demo: tuple[CatalogIndex, CatalogIndex], word: str,
                                                                 category: str) -> None:
    hybrid, bm25 = demo
    assert bm25.text_search(word, 10) == []  # in no name, no synonym line: bm25 alone finds nothing
    hits = hybrid.text_search(word, 10)
    assert hits[0].category == category
    assert all(hit.matched == [MEANING] for hit in hits)


@pytest.mark.parametrize("name", ALSO)
def test_an_exact_product_name_still_comes_first(demo: tuple[CatalogIndex, CatalogIndex], name: str) -> None:
    hybrid, bm25 = demo
    hits = hybrid.text_search(name, 10)
    assert hits[0].name == name and hits[0].score == 1.0
    assert "name" in hits[0].matched and MEANING in hits[0].matched  # found by both sides
    assert hits[0].id == bm25.text_search(name, 10)[0].id
    assert len(hits) == 10  # and products near it in meaning fill the page


def test_scores_fall_from_1_in_rank_order(demo: tuple[CatalogIndex, CatalogIndex]) -> None:
    """Shoppers' votes are blended into text scores (gateway/learnt.py): they stay in 0..1, best first."""
    scores = [hit.score for hit in demo[0].text_search("oak table", 20)]
    assert scores == sorted(scores, reverse=True) and all(0 < s <= 1 for s in scores)


def test_a_search_of_stop_words_alone_is_refused_before_any_model_runs(demo: tuple[CatalogIndex, CatalogIndex]) -> None:
    with pytest.raises(BadTextQuery):
        demo[0].text_search("the with of", 10)


def test_without_a_text_model_the_ranking_is_bm25s_own(demo: tuple[CatalogIndex, CatalogIndex]) -> None:
    """TEXT_MODEL=none: the first photo of each variant group in bm25's order, its score and fields, as before."""
    bm25 = demo[1]
    assert bm25.text is not None
    for q in ("chair", "POÄNG armchair", "couch", "lamp"):
        expected: dict[str, tuple[str, float, list[str]]] = {}
        for match in bm25.text.search(bm25.text.parse(q), 1000):
            item = bm25.items[match.label]
            expected.setdefault(item.group, (item.id, match.score, match.matched))
        got = [(h.id, h.score, h.matched) for h in bm25.text_search(q, 10)]
        assert got == list(expected.values())[:10]


def test_filters_and_a_category_apply_to_both_sides(demo: tuple[CatalogIndex, CatalogIndex]) -> None:
    hybrid = demo[0]
    assert {hit.category for hit in hybrid.text_search("chesterfield", 10, category="chair")} == {"chair"}


def test_a_photo_search_narrowed_by_an_absent_word_finds_products_by_meaning(
        demo: tuple[CatalogIndex, CatalogIndex]) -> None:
    hybrid, bm25 = demo
    query = np.ones(8, np.float32) / np.sqrt(8)
    assert bm25.search("sofa", query, 5, q="chesterfield") == []
    assert len(hybrid.search("sofa", query, 5, q="chesterfield")) == 5
    exact = {h.id for h in hybrid.search("chair", query, 5, q="POÄNG")}  # found words stay a strict filter
    assert exact == {h.id for h in bm25.search("chair", query, 5, q="POÄNG")}


def test_vectors_from_another_model_are_refused_with_the_reason(demo: tuple[CatalogIndex, CatalogIndex],
                                                                text_model: TextEmbedder) -> None:
    other = TextModelInfo(name="sentence-transformers/paraphrase-MiniLM-L3-v2", digest="0" * 64, dim=384)
    with pytest.raises(TextModelMismatch) as refused:
        Meaning.load(demo[0].version_dir, manifest(other, []), served(text_model), Fusion())
    assert "paraphrase-MiniLM-L3-v2" in refused.value.message and text_model.info.name in refused.value.message
    assert "Re-index" in refused.value.message
    assert Meaning.load(demo[0].version_dir, manifest(other, []), None, Fusion()) is None  # TEXT_MODEL=none: bm25
