"""The `where` filter syntax, shared by the gateway (which refuses a bad one before reading an upload)
and the similarity service (which applies it inside the search).

A filter is `column<op>value` with `=`, `!=`, `<`, `<=`, `>` or `>=`, e.g. `price<=300` or
`in_stock=yes`; the columns are the catalogue's own (`GET /v1/columns`). How a filter compares
cells is the similarity service's (`similarity_service/filters.py`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from lookalike.errors import BadFilter, UnknownColumn

EXPRESSION = re.compile(r"^\s*([^<>=!]+?)\s*(<=|>=|!=|<|>|=)\s*([^<>=]*?)\s*$")
MAX_FILTERS = 16


def as_number(text: str) -> float | None:
    """The text as a finite number, else None (`nan` and `inf` are text here)."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class Filter:
    """One parsed `column<op>value`; `number` is the value as a number when it reads as one."""

    column: str
    op: str
    value: str
    number: float | None

    def __str__(self) -> str:
        return f"{self.column}{self.op}{self.value}"


def parse_filters(expressions: Iterable[str], columns: Sequence[str]) -> list[Filter]:
    """Each expression as a `Filter` over one of `columns`; BadFilter or UnknownColumn says which and why."""
    texts = list(expressions)
    listed = ", ".join(columns) if columns else "none: this catalogue's products.csv has no further columns"
    if len(texts) > MAX_FILTERS:
        raise BadFilter(f"At most {MAX_FILTERS} `where` filters at once; {len(texts)} were sent.")
    filters = []
    for text in texts:
        match = EXPRESSION.match(text)
        if match is None or not match.group(3):
            raise BadFilter(f"`where={text}` is not column<op>value (op one of =, !=, <, <=, >, >=), "
                            f"e.g. price<=300. Filterable columns: {listed}.")
        column, op, value = match.groups()
        if column not in columns:
            raise UnknownColumn(f"`where={text}`: there is no filterable column {column!r}. "
                                f"Filterable columns: {listed}.")
        filters.append(Filter(column, op, value, as_number(value)))
    return filters
