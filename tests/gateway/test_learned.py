"""What votes teach a text query, and how much they may move it: pure functions, no database."""

from __future__ import annotations

import pytest

from gateway.learned import blend, learned_prior


def test_the_prior_grows_with_agreeing_networks_and_stops_at_the_weight() -> None:
    prior = learned_prior({"a": 2, "b": 3, "c": 40, "d": -2, "e": 0}, weight=1.0, full_at=3)
    assert prior == pytest.approx({"a": 2 / 3, "b": 1.0, "c": 1.0, "d": -2 / 3})


def test_one_network_alone_moves_nothing() -> None:
    assert learned_prior({"liked-by-one": 1, "unliked-by-one": -1}, weight=1.0, full_at=3) == {}
    assert learned_prior({"liked-by-one": 1}, weight=1.0, full_at=3, min_networks=1) == pytest.approx(
        {"liked-by-one": 1 / 3})


def test_items_liked_for_the_query_rise_and_carry_learned() -> None:
    ranked = blend([("sofa-1", 0.9), ("sofa-2", 0.8), ("sofa-3", 0.7)], {"sofa-3": 1.0}, k=3)
    assert [r.id for r in ranked] == ["sofa-3", "sofa-1", "sofa-2"]
    assert [r.learned for r in ranked] == [True, False, False]
    assert all(0 <= r.score <= 1 for r in ranked)


def test_a_term_the_text_does_not_find_returns_what_shoppers_liked() -> None:
    ranked = blend([], {"chair-1": 1.0, "chair-2": 1 / 3, "lamp-1": -1.0}, k=10)
    assert [r.id for r in ranked] == ["chair-1", "chair-2"]
    assert all(r.learned and r.text_score == 0 for r in ranked)


def test_the_prior_is_bounded_by_one_strong_text_match() -> None:
    """An item nothing in the text matched, with any number of agreeing networks, ties a perfect match without
    votes. Who may vote, and how voters are counted, is tests/gateway/test_vote_gaming.py's subject."""
    flood = learned_prior({"weak": 10_000}, weight=1.0, full_at=3)
    ranked = blend([("perfect", 1.0), ("weak", 0.0)], flood, k=2)
    assert ranked[0].score == ranked[1].score == pytest.approx(0.5)


def test_two_networks_lift_a_fair_match_past_a_near_tie() -> None:
    text = [("best", 0.87), ("fair", 0.73)]
    assert [r.id for r in blend(text, learned_prior({"fair": 1}, 1.0, 3), k=2)] == ["best", "fair"]
    assert [r.id for r in blend(text, learned_prior({"fair": 2}, 1.0, 3), k=2)] == ["fair", "best"]


def test_disliked_items_sink_without_leaving_a_text_result() -> None:
    ranked = blend([("a", 0.9), ("b", 0.8)], {"a": -1.0}, k=2)
    assert [r.id for r in ranked] == ["b", "a"] and ranked[1].learned


def test_without_votes_the_text_order_and_k_stand() -> None:
    ranked = blend([("a", 0.9), ("b", 0.8), ("c", 0.1)], {}, k=2)
    assert [r.id for r in ranked] == ["a", "b"] and not any(r.learned for r in ranked)
