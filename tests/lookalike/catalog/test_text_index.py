"""The text index on its own: bm25 over weighted fields, diacritics, synonyms, prefixes, hostile words,
and the allowed labels that narrow a Faiss search."""

from __future__ import annotations

import string
from pathlib import Path

import numpy as np
import pytest

from lookalike.catalog.faiss_store import CategoryIndex
from lookalike.catalog.layout import SYNONYMS, TEXT_INDEX
from lookalike.catalog.manifest import CatalogItem
from lookalike.catalog.text_index import TextIndex, text_fields, write_text_index
from lookalike.errors import BadTextQuery

PRODUCTS = [
    ("chair", "POÄNG armchair", {"colour": "birch", "price": "129", "url": "https://example.com/sofa"}),
    ("chair", "ADDE chair", {"colour": "white"}),
    ("sofa", "KLIPPAN two-seat sofa", {"colour": "green velvet"}),
    ("sofa", "EKTORP three-seat sofa", {"colour": "oak"}),
    ("bed", "MALM bed frame", {"colour": "oak veneer", "license": "sofa"}),
    ("lamp", "HEKTAR floor lamp", {}),
]


def items() -> list[CatalogItem]:
    return [CatalogItem(label=label, id=f"p{label}", category=category, name=name, file=f"{category}/{label}.jpg",
                        extra=extra) for label, (category, name, extra) in enumerate(PRODUCTS)]


def open_index(tmp_path: Path, synonyms: str | None = None, **weights: float) -> TextIndex:
    catalogue = items()
    write_text_index(tmp_path / TEXT_INDEX, catalogue, text_fields(catalogue, weights or None),
                     {5: [("table lamp", 0.61), ("spotlight", 0.2)]})
    if synonyms is not None:
        (tmp_path / SYNONYMS).write_text(synonyms)
    index = TextIndex.load(tmp_path)
    assert index is not None
    return index


def names(index: TextIndex, q: str, k: int = 10, category: str | None = None) -> list[str]:
    return [PRODUCTS[m.label][1] for m in index.search(index.parse(q), k, category)]


def test_the_fields_are_name_category_wordy_columns_and_tags_with_name_weighted_highest() -> None:
    fields = {f.name: f.weight for f in text_fields(items())}
    assert list(fields) == ["name", "category", "colour", "imagenet_tags"]  # price is numbers, url and license excluded
    assert fields["name"] == max(fields.values())
    assert text_fields(items(), {"colour": 0, "name": 3})[0].weight == 3.0
    assert "colour" not in {f.name for f in text_fields(items(), {"colour": 0})}


def test_an_exact_name_comes_first_and_says_it_matched_the_name(tmp_path: Path) -> None:
    index = open_index(tmp_path)
    found = index.search(index.parse("KLIPPAN two-seat sofa"), 10)
    assert PRODUCTS[found[0].label][1] == "KLIPPAN two-seat sofa"
    assert "name" in found[0].matched
    assert all(0 < m.score < 1 for m in found)
    assert [m.score for m in found] == sorted((m.score for m in found), reverse=True)


def test_diacritics_do_not_matter_either_way(tmp_path: Path) -> None:
    index = open_index(tmp_path)
    assert names(index, "poang") == ["POÄNG armchair"]
    assert names(index, "PÖÅNG") == ["POÄNG armchair"]


def test_the_last_word_matches_as_a_prefix_while_it_is_typed(tmp_path: Path) -> None:
    assert names(open_index(tmp_path), "klip") == ["KLIPPAN two-seat sofa"]


def test_couch_finds_sofas_through_the_default_synonyms(tmp_path: Path) -> None:
    found = names(open_index(tmp_path), "couch")
    assert found and all("sofa" in name for name in found)


def test_a_store_synonyms_file_replaces_the_default_list(tmp_path: Path) -> None:
    index = open_index(tmp_path, synonyms="couch => bed\n")
    assert names(index, "couch") == ["MALM bed frame"]


def test_a_name_match_outranks_a_colour_match(tmp_path: Path) -> None:
    catalogue = [CatalogItem(label=0, id="a", category="table", name="Plain table", file="a", extra={"colour": "oak"}),
                 CatalogItem(label=1, id="b", category="table", name="Oak table", file="b", extra={"colour": "white"})]
    write_text_index(tmp_path / TEXT_INDEX, catalogue, text_fields(catalogue))
    index = TextIndex.load(tmp_path)
    found = index.search(index.parse("oak"), 10)
    assert [m.label for m in found] == [1, 0]
    assert found[0].matched == ["name"] and found[1].matched == ["colour"]


def test_words_in_two_fields_name_both_and_the_category_narrows(tmp_path: Path) -> None:
    index = open_index(tmp_path)
    found = index.search(index.parse("green sofa"), 10)
    assert [PRODUCTS[m.label][1] for m in found] == ["KLIPPAN two-seat sofa"]
    assert set(found[0].matched) == {"name", "category", "colour"}
    assert names(index, "oak", category="sofa") == ["EKTORP three-seat sofa"]


def test_imagenet_tags_are_searched_and_kept_with_their_probabilities(tmp_path: Path) -> None:
    index = open_index(tmp_path)
    assert names(index, "spotlight") == ["HEKTAR floor lamp"]
    assert index.tags(5) == [("table lamp", 0.61), ("spotlight", 0.2)]


@pytest.mark.parametrize("q", ['"', "NEAR(", "*", "-", ":", 'sofa" OR "bed', "NEAR(sofa bed, 2)", "name : sofa",
                               "sofa AND", "(((", "x" * 10_000, "\x00\x01\x1b[31m", string.punctuation,
                               "sofa -bed", "^sofa", "sofa*"])
def test_hostile_words_find_things_or_are_a_bad_query_never_an_sqlite_error(tmp_path: Path, q: str) -> None:
    index = open_index(tmp_path)
    try:
        index.search(index.parse(q), 10)
    except BadTextQuery:
        pass


@pytest.mark.parametrize("q", ['"sofa"', "sofa*", "^sofa", "sofa AND", "-sofa", "sofa:", "(sofa)"])
def test_syntax_around_a_word_is_punctuation_and_the_word_is_still_searched(tmp_path: Path, q: str) -> None:
    index = open_index(tmp_path)
    assert {PRODUCTS[m.label][0] for m in index.search(index.parse(q), 10)} == {"sofa"}


def test_matching_labels_are_what_a_photo_search_may_return(tmp_path: Path) -> None:
    index = open_index(tmp_path)
    assert sorted(index.matching_labels(index.parse("oak"))) == [3, 4]
    assert list(index.matching_labels(index.parse("oak"), "bed")) == [4]
    assert index.matching_labels(index.parse("zebra")).dtype == np.int64


@pytest.mark.parametrize("factory", ["Flat", "HNSW32", "IVF16,Flat"])
def test_a_category_search_with_allowed_labels_returns_only_those_inside_faiss(factory: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(2000, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    labels = np.arange(5000, 7000)
    built = CategoryIndex.build(vectors, labels, factory)
    built.save(tmp_path / "c.faiss")
    index = CategoryIndex.load(tmp_path / "c.faiss")
    allowed = labels[::40]  # 2% of the category, none of them the query's nearest neighbours
    hits = index.search(vectors[1], 10, allowed)
    assert len(hits) == 10 and {label for label, _ in hits} <= set(allowed.tolist())
    exact = sorted(allowed.tolist(), key=lambda label: -float(vectors[label - 5000] @ vectors[1]))[:10]
    if factory == "Flat":
        assert [label for label, _ in hits] == exact
    assert index.search(vectors[1], 10, np.array([], dtype=np.int64)) == []
    assert [label for label, _ in index.search(vectors[1], 10, None)][0] == 5001
