"""Synonyms in the Solr format: equivalences, one-way mappings, phrases, and clear errors for bad lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from lookalike.catalog.synonyms import DEFAULT_SYNONYMS, Synonyms
from lookalike.errors import SynonymsError


def test_an_equivalence_finds_every_member_from_any_member() -> None:
    synonyms = Synonyms.parse("sofa, couch, settee\n")
    assert synonyms.expand(["couch"]) == [(("couch",), frozenset({("sofa",), ("couch",), ("settee",)}))]


def test_a_mapping_replaces_the_left_side_only() -> None:
    synonyms = Synonyms.parse("couch => sofa\n# a comment\n\n")
    assert synonyms.expand(["couch"])[0][1] == {("sofa",)}
    assert synonyms.expand(["sofa"])[0][1] == {("sofa",)}


def test_phrases_match_longest_first_and_case_and_accents_do_not_matter() -> None:
    synonyms = Synonyms.parse("Bed Frame, bedstead\nbed, cot\nFÅTÖLJ, armchair")
    groups = synonyms.expand(["big", "bed", "frame", "fatolj"])
    assert [typed for typed, _ in groups] == [("big",), ("bed", "frame"), ("fatolj",)]
    assert groups[1][1] == {("bed", "frame"), ("bedstead",)}
    assert groups[2][1] == {("fatolj",), ("armchair",)}


@pytest.mark.parametrize("line, says", [("sofa", "two or more"), ("sofa, , couch", "hold a word"),
                                        ("a => b => c", "once"), ("=> sofa", "hold a word")])
def test_a_bad_line_names_its_line_number(line: str, says: str) -> None:
    with pytest.raises(SynonymsError) as raised:
        Synonyms.parse(f"sofa, couch\n{line}\n", "store/synonyms.txt")
    assert "store/synonyms.txt line 2" in str(raised.value) and says in str(raised.value)


def test_the_default_list_is_used_without_a_store_file_and_covers_the_furniture_basics(tmp_path: Path) -> None:
    synonyms = Synonyms.load(tmp_path / "synonyms.txt")
    assert synonyms == Synonyms.load(DEFAULT_SYNONYMS)
    for word, also in [("couch", "sofa"), ("settee", "sofa"), ("easy", "armchair"), ("bedstead", "bed"),
                       ("light", "lamp")]:
        found = {alt for typed, alts in synonyms.expand(word.split() + (["chair"] if word == "easy" else []))
                 for alt in alts}
        assert (also,) in found, word
