"""The `where` syntax both ends share: `column<op>value`, refused with the columns there are."""

from __future__ import annotations

import pytest

from lookalike.errors import BadFilter, UnknownColumn
from lookalike.where import MAX_FILTERS, Filter, parse_filters

COLUMNS = ["colour", "in_stock", "price"]


def test_an_expression_is_a_column_an_operator_and_a_value() -> None:
    assert parse_filters(["price <= 300", "in_stock=yes", "colour!=green"], COLUMNS) == [
        Filter("price", "<=", "300", 300.0), Filter("in_stock", "=", "yes", None), Filter("colour", "!=", "green", None)]


@pytest.mark.parametrize("text", ["price", "price~3", "price<=", "<=3", "price<=<3", "price=>3"])
def test_a_malformed_expression_is_refused_listing_the_columns(text: str) -> None:
    with pytest.raises(BadFilter, match="colour, in_stock, price"):
        parse_filters([text], COLUMNS)


def test_an_unknown_column_is_refused_listing_the_columns() -> None:
    with pytest.raises(UnknownColumn, match="'size'.*colour, in_stock, price"):
        parse_filters(["size=L"], COLUMNS)


def test_more_filters_than_allowed_are_refused() -> None:
    with pytest.raises(BadFilter, match=f"At most {MAX_FILTERS}"):
        parse_filters(["price<=3"] * (MAX_FILTERS + 1), COLUMNS)
