"""Hedging when the classifier is unsure: search the top two categories and merge by score.

The gateway and the evaluation (`python -m evaluation.photos`) both decide and merge with these two
functions, so what the evaluation measures is what the product does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from itertools import chain

from lookalike.contracts import Hit


def categories_to_search(decided: str, probabilities: Mapping[str, float], hedge_below: float) -> list[str]:
    """The decided category, and the runner-up too when the decision's probability is below `hedge_below`.

    `hedge_below` = 0 never hedges.
    """
    others = [c for c in probabilities if c != decided]
    if others and probabilities[decided] < hedge_below:
        return [decided, max(others, key=probabilities.__getitem__)]
    return [decided]


def merge_by_score(hit_lists: Iterable[Sequence[Hit]], k: int) -> list[Hit]:
    """The k best hits of several searches; scores are cosines of the same query, so they compare."""
    return sorted(chain.from_iterable(hit_lists), key=lambda hit: hit.score, reverse=True)[:k]
