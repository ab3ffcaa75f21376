"""`make eval-text`: precision and recall of word queries, from a CSV of queries and their relevant products."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evaluation.text import main
from tests.support import REPO, write_csv


def test_the_shipped_query_set_scores_on_a_catalogue_and_reports_by_kind(small_catalog: Path, tmp_path: Path) -> None:
    queries = write_csv(tmp_path / "q.csv", [
        {"kind": "exact name", "query": "ADDE chair", "relevant_ids": "ikea-adde-chair-1 ikea-adde-chair-2",
         "relevant_categories": ""},
        {"kind": "synonym", "query": "couch", "relevant_ids": "", "relevant_categories": "sofa"},
        {"kind": "synonym", "query": "zebrawood", "relevant_ids": "", "relevant_categories": "lamp"},
    ])
    assert main(["--catalog", str(small_catalog), "--queries", str(queries), "--out", str(tmp_path / "out")]) == 0
    report = json.loads((tmp_path / "out" / "text_report.json").read_text())
    exact = report["summary"]["exact name"]
    assert exact["precision@1"] == 1.0 and exact["recall@10"] == 1.0 and exact["precision@10"] == pytest.approx(0.2)
    synonym = report["summary"]["synonym"]
    assert synonym["precision@10"] == pytest.approx((0.6 + 0) / 2)  # 6 sofas in the small catalogue, 0 zebrawood
    assert (tmp_path / "out" / "text_report.md").read_text().startswith("## Text search")


def test_the_shipped_query_set_is_well_formed() -> None:
    from evaluation.text import read_text_queries

    queries = read_text_queries(REPO / "evaluation" / "data" / "text_queries.csv")
    assert {q.kind for q in queries} == {"exact name", "no diacritics", "synonym", "category word"}
    assert all(q.ids or q.categories for q in queries)


def test_a_missing_query_set_is_a_clear_error(small_catalog: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--catalog", str(small_catalog), "--queries", str(tmp_path / "none.csv")]) == 2
    assert "cannot read the text query set" in capsys.readouterr().err
