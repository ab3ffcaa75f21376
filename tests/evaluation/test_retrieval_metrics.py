"""The evaluation's metrics, on rankings whose answers are known by hand."""

from __future__ import annotations

import pytest

from evaluation.retrieval_metrics import (
    category_accuracy,
    confusion_matrix,
    precision_at,
    product_recall_at,
    retrieval_metrics,
)
from lookalike.contracts import Hit


def ranking(*items: str) -> list[Hit]:
    """Hits from "category:id" strings, best first."""
    return [Hit(id=i.split(":")[1], name=i, category=i.split(":")[0], score=1 - n / 10) for n, i in enumerate(items)]


def test_category_accuracy_and_confusion_come_from_a_known_confusion() -> None:
    expected = ["chair"] * 4 + ["lamp"] * 3 + ["bed"] * 3
    decided = ["chair", "chair", "chair", "lamp", "lamp", "lamp", "chair", "bed", "bed", "bed"]
    assert category_accuracy(expected, decided) == pytest.approx(0.8)
    assert confusion_matrix(expected, decided, ["bed", "chair", "lamp"]) == [[3, 0, 0], [0, 3, 1], [0, 1, 2]]


def test_a_query_category_missing_from_the_catalogue_gets_its_own_row() -> None:
    assert confusion_matrix(["wardrobe"], ["bed"], ["bed", "wardrobe"]) == [[0, 0], [1, 0]]


def test_precision_at_k_is_the_share_of_the_top_k_in_the_query_category() -> None:
    rankings = [ranking("chair:a", "lamp:b", "chair:c", "chair:d", "bed:e"), ranking("lamp:x", "lamp:y")]
    expected = ["chair", "lamp"]
    assert precision_at(1, rankings, expected) == pytest.approx((1 + 1) / 2)
    assert precision_at(5, rankings, expected) == pytest.approx((3 / 5 + 2 / 5) / 2)  # a short ranking's gaps miss


def test_product_recall_counts_any_of_the_named_products_and_only_queries_that_name_one() -> None:
    rankings = [ranking("chair:a", "chair:b"), ranking("lamp:x", "lamp:y"), ranking("bed:p")]
    products = [frozenset({"b", "z"}), frozenset({"q"}), frozenset()]
    assert product_recall_at(1, rankings, products) == 0.0
    assert product_recall_at(10, rankings, products) == pytest.approx(0.5)
    assert product_recall_at(10, rankings, [frozenset()] * 3) is None


def test_the_metrics_are_keyed_as_in_the_report() -> None:
    metrics = retrieval_metrics([ranking("chair:a")], ["chair"], [frozenset()])
    assert metrics == {"precision@1": 1.0, "precision@5": 0.2, "precision@10": 0.1,
                       "product_recall@1": None, "product_recall@10": None}
