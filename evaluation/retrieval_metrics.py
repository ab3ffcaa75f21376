"""What a search team measures, as plain functions of rankings and the expected answers.

A result is relevant when its category is the query's category. Precision@k divides by k, the
usual definition: a ranking shorter than k counts its missing places as misses. Product
recall@k is the share of queries (among those that name products) with one of their products
in the top k.
"""

from __future__ import annotations

from collections.abc import Sequence

from lookalike.contracts import Hit

PRECISION_AT = (1, 5, 10)
RECALL_AT = (1, 10)


def category_accuracy(expected: Sequence[str], decided: Sequence[str]) -> float:
    return sum(e == d for e, d in zip(expected, decided, strict=True)) / len(expected)


def confusion_matrix(expected: Sequence[str], decided: Sequence[str], labels: Sequence[str]) -> list[list[int]]:
    """Rows are the expected categories, columns the decided ones, in the order of `labels`."""
    position = {label: i for i, label in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    for e, d in zip(expected, decided, strict=True):
        matrix[position[e]][position[d]] += 1
    return matrix


def precision_at(k: int, rankings: Sequence[Sequence[Hit]], expected: Sequence[str]) -> float:
    return sum(sum(h.category == e for h in r[:k]) / k for r, e in zip(rankings, expected, strict=True)) / len(expected)


def product_recall_at(k: int, rankings: Sequence[Sequence[Hit]], products: Sequence[frozenset[str]]) -> float | None:
    """None when no query names a product."""
    named = [(r, ids) for r, ids in zip(rankings, products, strict=True) if ids]
    if not named:
        return None
    return sum(any(h.id in ids for h in r[:k]) for r, ids in named) / len(named)


def retrieval_metrics(rankings: Sequence[Sequence[Hit]], expected: Sequence[str],
                      products: Sequence[frozenset[str]]) -> dict[str, float | None]:
    """precision@1, @5, @10 and product_recall@1, @10, keyed as in report.json."""
    metrics: dict[str, float | None] = {f"precision@{k}": precision_at(k, rankings, expected) for k in PRECISION_AT}
    metrics.update({f"product_recall@{k}": product_recall_at(k, rankings, products) for k in RECALL_AT})
    return metrics
