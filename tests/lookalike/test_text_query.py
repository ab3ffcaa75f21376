"""A shopper's words become plain words: no FTS5 syntax survives, and an unsearchable query is a 422."""

from __future__ import annotations

import pytest

from lookalike.errors import BadTextQuery
from lookalike.text_query import MAX_QUERY_CHARS, normalise_query, query_words, words


def test_words_are_case_folded_and_lose_their_diacritics_as_fts5_unicode61_does() -> None:
    assert words("POÄNG Armchair") == ["poang", "armchair"]
    assert words("ÄPPLARÖ / HÅLLÖ 2-seat sofa") == ["applaro", "hallo", "2", "seat", "sofa"]


def test_votes_are_stored_under_the_same_words_the_text_index_searches() -> None:
    assert normalise_query("  Green   VELVET, sofa!") == "green velvet sofa"
    assert normalise_query("Poäng") == "poang"
    assert normalise_query("sofa_bed") == " ".join(words("sofa_bed")) == "sofa bed"
    assert normalise_query("?!") == ""
    assert len(normalise_query("oak " * 100)) == MAX_QUERY_CHARS


@pytest.mark.parametrize("typed, expected", [
    ('"green" NEAR(sofa oak)', ["green", "near", "sofa", "oak"]),
    ("sof* -red name:oak", ["sof", "red", "name", "oak"]),
    ("a_b\x00c\x1bd", ["a", "b", "c", "d"]),
])
def test_fts5_syntax_is_plain_words(typed: str, expected: list[str]) -> None:
    assert words(typed) == expected


@pytest.mark.parametrize("q, says", [
    ("", "Type some words"), ("   ", "Type some words"), (None, "Type some words"),
    ("x" * (MAX_QUERY_CHARS + 1), "at most 200"), ("x" * 10_000, "at most 200"),
    ('"', "no word"), ("NEAR(", None), ("*", "no word"), ("the with of", "no word"), ("-:()\x00\x07", "no word"),
])
def test_unsearchable_queries_are_422_with_a_message(q: str | None, says: str | None) -> None:
    if says is None:  # `NEAR` is a plain word, and a searchable one
        assert query_words(q) == ["near"]
        return
    with pytest.raises(BadTextQuery) as raised:
        query_words(q)
    assert raised.value.status == 422 and says in raised.value.message


def test_stop_words_stay_for_phrases_when_a_real_word_is_there() -> None:
    assert query_words("chest of drawers") == ["chest", "of", "drawers"]
