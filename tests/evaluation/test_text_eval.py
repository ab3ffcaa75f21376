"""`make eval-text`: precision and recall of word queries, from a CSV of queries and their relevant products."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from evaluation.text import main
from tests.support import REPO, demo_rows, write_csv

if TYPE_CHECKING:
    from lookalike.catalog.text_embedding import TextEmbedder


def test_the_shipped_query_set_scores_on_a_catalogue_and_reports_by_kind(small_catalog: Path, tmp_path: Path) -> None:
    queries = write_csv(tmp_path / "q.csv", [
        {"kind": "exact name", "query": "ADDE chair", "relevant_ids": "ikea-adde-chair-1 ikea-adde-chair-2",
         "relevant_categories": ""},
        {"kind": "synonym", "query": "couch", "relevant_ids": "", "relevant_categories": "sofa"},
        {"kind": "synonym", "query": "zebrawood", "relevant_ids": "", "relevant_categories": "lamp"},
    ])
    assert main(["--catalog", str(small_catalog), "--queries", str(queries), "--out", str(tmp_path / "out")]) == 0
    report = json.loads((tmp_path / "out" / "text_report.json").read_text())
    assert "hybrid" not in report  # TEXT_MODEL=none (tests/conftest.py): bm25 alone
    exact = report["bm25"]["summary"]["exact name"]
    # results are products, one per variant group: ADDE chair's two photos are one result, one in ten
    assert exact["precision@1"] == 1.0 and exact["recall@10"] == 1.0 and exact["precision@10"] == pytest.approx(0.1)
    synonym = report["bm25"]["summary"]["synonym"]
    assert synonym["recall@10"] is None  # no product listed: judged by category alone
    assert synonym["precision@10"] == pytest.approx((0.4 + 0) / 2)  # 4 sofa groups in the small catalogue, 0 zebrawood
    assert (tmp_path / "out" / "text_report.md").read_text().startswith("## Text search")


def test_the_shipped_query_set_is_well_formed() -> None:
    from evaluation.text import read_text_queries

    queries = read_text_queries(REPO / "evaluation" / "data" / "text_queries.csv")
    assert {q.kind for q in queries} == {"exact name", "no diacritics", "synonym", "category word"}
    assert all(q.ids or q.categories for q in queries)


def test_the_absent_words_are_in_no_product_name_and_no_synonym_line(shared: Path) -> None:
    """The set hybrid search is judged on: words bm25 cannot find in the demo catalogue, whatever their prefix."""
    from evaluation.text import read_text_queries
    from lookalike.catalog.synonyms import DEFAULT_SYNONYMS
    from lookalike.text_query import words

    queries = read_text_queries(REPO / "evaluation" / "data" / "absent_words.csv")
    assert len(queries) >= 25 and {q.kind for q in queries} == {"absent word"}
    names = {w for row in demo_rows(shared) for w in words(row["name"])}
    synonyms = {w for line in DEFAULT_SYNONYMS.read_text().splitlines() for w in words(line.split("#")[0])}
    categories = {"bed", "chair", "lamp", "sofa", "table"}
    for q in queries:
        assert not set(words(q.query)) & (names | synonyms), q.query
        assert q.categories and q.categories <= categories and not q.ids


def test_hybrid_is_reported_beside_bm25_with_a_text_model(small_catalog: Path, tmp_path: Path,
                                                          text_model: TextEmbedder) -> None:
    from evaluation.text import TextQuery, evaluate, markdown, written_now

    queries = [TextQuery("absent word", "chesterfield", frozenset(), frozenset({"sofa"})),
               TextQuery("exact name", "ADDE chair", frozenset({"ikea-adde-chair-1"}), frozenset())]
    report = evaluate(written_now(small_catalog, tmp_path, text_model), queries)
    assert report["text_model"]["name"] == text_model.info.name
    bm25, hybrid = report["bm25"]["summary"], report["hybrid"]["summary"]
    assert bm25["absent word"]["precision@1"] == 0.0 and hybrid["absent word"]["precision@1"] == 1.0
    assert bm25["exact name"]["precision@1"] == hybrid["exact name"]["precision@1"] == 1.0
    assert "| absent word | hybrid | 1 | 1.000 |" in markdown(report)


def test_a_missing_query_set_is_a_clear_error(small_catalog: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--catalog", str(small_catalog), "--queries", str(tmp_path / "none.csv")]) == 2
    assert "cannot read the text query set" in capsys.readouterr().err
