"""Query sets: labels.csv with file, category and optional product ids."""

from __future__ import annotations

from pathlib import Path

import pytest

from evaluation.query_set import Query, read_query_set
from lookalike.errors import QuerySetError


def test_several_product_ids_separated_by_a_bar_all_count(tmp_path: Path) -> None:
    (tmp_path / "labels.csv").write_text("file,category,product_id\n"
                                         "a.jpg,chair,ikea-adde-1| ikea-adde-2\nb.jpg,lamp,\n")
    assert read_query_set(tmp_path) == [Query("a.jpg", "chair", frozenset({"ikea-adde-1", "ikea-adde-2"})),
                                        Query("b.jpg", "lamp", frozenset())]


def test_the_product_id_column_is_optional(tmp_path: Path) -> None:
    (tmp_path / "labels.csv").write_text("file,category\nbed/x.jpg,bed\n")
    assert read_query_set(tmp_path) == [Query("bed/x.jpg", "bed", frozenset())]


@pytest.mark.parametrize("text, message", [
    (None, "labels.csv does not exist"),
    ("file,label\na.jpg,chair\n", "lacks the column"),
    ("file,category\na.jpg,\n", "labels.csv:2 needs both"),
    ("file,category\n", "lists no queries"),
])
def test_an_unusable_query_set_is_explained(tmp_path: Path, text: str | None, message: str) -> None:
    if text is not None:
        (tmp_path / "labels.csv").write_text(text)
    with pytest.raises(QuerySetError, match=message):
        read_query_set(tmp_path)
