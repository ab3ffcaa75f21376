"""Hedging: which categories an unsure search covers, and how their results merge."""

from __future__ import annotations

from lookalike.contracts import Hit
from lookalike.hedging import categories_to_search, merge_by_score

PROBABILITIES = {"bed": 0.05, "chair": 0.45, "lamp": 0.1, "sofa": 0.35, "table": 0.05}


def hit(item_id: str, category: str, score: float) -> Hit:
    return Hit(id=item_id, name=item_id, category=category, score=score)


def test_a_sure_decision_searches_one_category() -> None:
    assert categories_to_search("chair", PROBABILITIES, hedge_below=0.4) == ["chair"]


def test_an_unsure_decision_also_searches_the_runner_up() -> None:
    assert categories_to_search("chair", PROBABILITIES, hedge_below=0.5) == ["chair", "sofa"]


def test_a_threshold_of_zero_never_hedges_and_one_category_cannot_hedge() -> None:
    assert categories_to_search("chair", PROBABILITIES, hedge_below=0.0) == ["chair"]
    assert categories_to_search("lamp", {"lamp": 0.3}, hedge_below=0.9) == ["lamp"]


def test_merged_results_are_the_best_k_of_both_by_score() -> None:
    chairs = [hit("c1", "chair", 0.9), hit("c2", "chair", 0.5)]
    sofas = [hit("s1", "sofa", 0.7), hit("s2", "sofa", 0.6)]
    assert [h.id for h in merge_by_score([chairs, sofas], k=3)] == ["c1", "s1", "s2"]
    assert [h.id for h in merge_by_score([chairs, []], k=10)] == ["c1", "c2"]
