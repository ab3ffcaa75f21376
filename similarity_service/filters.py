"""`where` filters on the catalogue's own columns: parsed once, evaluated over every photo at once.

A filter is `column<op>value` with `=`, `!=`, `<`, `<=`, `>` or `>=`, e.g. `price<=300` or
`in_stock=yes`. A cell and a value that both parse as numbers compare as numbers, anything
else compares as text, except that a cell which is no number never passes `<`, `<=`, `>` or
`>=` a number (`price<=300` leaves out "on request"). An empty cell never matches, not even `!=`. The columns are the
products.csv columns beyond id, category, name and file, and `item_group_id`.
"""

from __future__ import annotations

import math
import operator
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lookalike.contracts import FilterableColumn
from lookalike.errors import BadFilter, UnknownColumn
from lookalike.manifest import CatalogItem

Comparison = Callable[[Any, Any], Any]
OPERATORS: dict[str, Comparison] = {"<=": operator.le, ">=": operator.ge, "!=": operator.ne, "<": operator.lt,
                                    ">": operator.gt, "=": operator.eq}
EXPRESSION = re.compile(r"^\s*([^<>=!]+?)\s*(<=|>=|!=|<|>|=)\s*([^<>=]*?)\s*$")
MOST_COMMON = 12  # text values listed for a column in /v1/columns
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


class ColumnTable:
    """Every photo's product columns as arrays indexed by Faiss label, so a filter is a few vector operations."""

    def __init__(self, items: Sequence[CatalogItem]) -> None:
        self.size = size = max((i.label for i in items), default=-1) + 1
        self.columns = sorted({name for item in items for name in item.extra})
        self.text: dict[str, np.ndarray] = {}
        self.number: dict[str, np.ndarray] = {}
        firsts = list({item.id: item for item in reversed(items)}.values())  # one photo per product
        self.described = [self._describe(name, firsts) for name in self.columns]
        for name in self.columns:
            cells = [""] * size
            for item in items:
                cells[item.label] = item.extra.get(name, "")
            text = np.array(cells, dtype=str)
            numbers = np.array([as_number(c) if c else None for c in cells], dtype=float)  # None becomes NaN
            self.text[name], self.number[name] = text, numbers

    @staticmethod
    def _describe(name: str, products: Sequence[CatalogItem]) -> FilterableColumn:
        values = [p.extra[name] for p in products if p.extra.get(name)]
        numbers = [n for n in map(as_number, values) if n is not None]
        if values and len(numbers) == len(values):
            return FilterableColumn(name=name, kind="number", products=len(values), min=min(numbers), max=max(numbers))
        common = Counter(values).most_common(MOST_COMMON)
        return FilterableColumn(name=name, kind="text", products=len(values), distinct=len(set(values)),
                                values=[value for value, _ in common])

    def mask(self, filters: Sequence[Filter]) -> np.ndarray:
        """True for each label whose product passes every filter."""
        passed = np.ones(self.size, dtype=bool)
        for f in filters:
            text, compare = self.text[f.column], OPERATORS[f.op]
            if f.number is not None:
                numbers = self.number[f.column]
                as_text = compare(text, f.value) if f.op in ("=", "!=") else np.zeros(self.size, dtype=bool)
                with np.errstate(invalid="ignore"):
                    result = np.where(np.isnan(numbers), as_text, compare(numbers, f.number))
            else:
                result = compare(text, f.value)
            passed &= result & (text != "")
        return passed
