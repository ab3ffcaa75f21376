"""`where` filters on the catalogue's own columns: parsed once, evaluated over every photo at once.

The syntax is `lookalike.where`'s. A cell and a value that both parse as numbers compare as
numbers, anything else compares as text, except that a cell which is no number never passes `<`,
`<=`, `>` or `>=` a number (`price<=300` leaves out "on request"). An empty cell never matches,
not even `!=`. The columns are the products.csv columns beyond id, category, name and file, and
`item_group_id`.
"""

from __future__ import annotations

import operator
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from lookalike.catalog.manifest import CatalogItem
from lookalike.contracts import FilterableColumn
from lookalike.where import Filter, as_number

Comparison = Callable[[Any, Any], Any]
OPERATORS: dict[str, Comparison] = {"<=": operator.le, ">=": operator.ge, "!=": operator.ne, "<": operator.lt,
                                    ">": operator.gt, "=": operator.eq}
MOST_COMMON = 12  # text values listed for a column in /v1/columns


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
