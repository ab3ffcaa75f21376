"""`make eval`'s feedback simulation: shoppers who search a word the catalogue lacks, mark and refine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evaluation.feedback import main

# The small catalogue has 6 photos per category, in 3 to 6 variant groups: a shopper sees 3 results.
ARGS = ["--depth", "3", "--rounds", "3"]


def test_votes_teach_a_word_the_catalogue_lacks_and_the_report_keeps_the_two_parts_apart(
        built_index: Path, tmp_path: Path) -> None:
    assert main(["--index", str(built_index), "--out", str(tmp_path), *ARGS]) == 0
    report = json.loads((tmp_path / "feedback_report.json").read_text())
    couch = next(t for t in report["terms"] if t["term"] == "couch")
    # No synonyms in the simulation: the first two shoppers find nothing, browse, refine and like the refined
    # sofas; votes from one network move nothing, from two they teach the word.
    assert couch["words_precision"][:2] == [0.0, 0.0] and couch["browsed"][:2] == [True, True]
    assert couch["words_precision"][2] == 1.0 and couch["feedback_rounds_words"] == 2
    # The refined list is searched in the liked products' category, so the first Refine shows sofas.
    assert couch["refined_precision"][0] == 1.0
    assert [r["round"] for r in report["per_round"]] == [1, 2, 3] and report["weights"] == "random"
    text = (tmp_path / "feedback_report.md").read_text()
    assert "`random` weights" in text and "p@3" in text


def test_the_simulation_leaves_the_served_index_and_its_feedback_alone(built_index: Path, tmp_path: Path) -> None:
    before = sorted(p.relative_to(built_index) for p in built_index.rglob("*"))
    assert main(["--index", str(built_index), "--out", str(tmp_path), *ARGS, "--rounds", "1"]) == 0
    assert sorted(p.relative_to(built_index) for p in built_index.rglob("*")) == before


def test_without_an_index_it_says_how_to_build_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--index", str(tmp_path / "none"), "--out", str(tmp_path / "out")]) == 2
    assert "make index" in capsys.readouterr().err
