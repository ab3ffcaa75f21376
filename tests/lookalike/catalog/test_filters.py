"""`where` filters evaluated over every photo's product columns at once (the syntax: tests/lookalike/test_where.py)."""

from __future__ import annotations

import numpy as np

from lookalike.catalog.filters import ColumnTable
from lookalike.catalog.manifest import CatalogItem
from lookalike.where import parse_filters

COLUMNS = ["colour", "in_stock", "price"]


def item(label: int, product: str, **extra: str) -> CatalogItem:
    return CatalogItem(label=label, id=product, category="chair", name=product, file=f"chair/{label}.jpg", extra=extra)


ITEMS = [item(0, "a", price="79", in_stock="yes", colour="green"),
         item(1, "a", price="79", in_stock="yes", colour="green"),  # a second photo of product a
         item(2, "b", price="300", in_stock="no", colour="blue"),
         item(3, "c", price="1000", in_stock="yes"),
         item(4, "d", price="on request", in_stock="yes", colour="green")]


def passing(*where: str) -> list[int]:
    table = ColumnTable(ITEMS)
    return np.flatnonzero(table.mask(parse_filters(where, table.columns))).tolist()


def test_numbers_compare_as_numbers() -> None:
    assert passing("price<1000") == [0, 1, 2]  # as text, "300" < "1000" would be false
    assert passing("price>=300") == [2, 3]  # "on request" is no number, so no price above one


def test_a_text_cell_equals_a_number_only_as_text() -> None:
    assert passing("price!=79") == [2, 3, 4]


def test_text_compares_as_text_and_every_filter_must_pass() -> None:
    assert passing("in_stock=yes", "colour=green") == [0, 1, 4]
    assert passing("price=on request") == [4]


def test_an_empty_cell_never_matches_not_even_not_equal() -> None:
    assert passing("colour!=blue") == [0, 1, 4]


def test_columns_are_described_by_kind_and_range_or_commonest_values() -> None:
    described = {c.name: c for c in ColumnTable(ITEMS[:4]).described}
    assert described["price"].kind == "number" and (described["price"].min, described["price"].max) == (79, 1000)
    assert described["price"].products == 3  # products, not photos
    assert described["in_stock"].kind == "text" and described["in_stock"].values == ["yes", "no"]
    assert described["colour"].products == 2
