"""A small real catalogue for the text search tests: named products chosen so words have known answers."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from indexing.build import BuildPlan, build_index
from tests.support import Services, demo_rows, write_catalog

PER_CATEGORY = 4
NAMED = ("POÄNG", "KLIPPAN")


def text_catalog(shared: Path, root: Path) -> Path:
    """Every POÄNG chair and KLIPPAN sofa, plus the first few photos of each category, with their rows."""
    rows = demo_rows(shared)
    kept = [r for r in rows if any(name in r["name"] for name in NAMED)]
    for category in sorted({r["category"] for r in rows}):
        kept += [r for r in rows if r["category"] == category and r not in kept][:PER_CATEGORY]
    return write_catalog(shared, root, kept, list(rows[0]))


def rows_of(catalog: Path) -> list[dict[str, str]]:
    with open(catalog / "products.csv", newline="") as fh:
        return list(csv.DictReader(fh))


@contextmanager
def serving(catalog: Path, tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[Services]:
    """`catalog` indexed with random weights, served by the three services (an eager classifier)."""
    index = tmp_path_factory.mktemp(f"{name}-index")
    build_index(BuildPlan(catalog, index, "random", precision="fp32"))
    with Services(index, tmp_path_factory.mktemp(f"{name}-logs")).running() as services:
        yield services
