"""Fixtures shared by the suite: real photos from ../shared, a real index, real service processes.

Nothing here fakes a part: the index is built by the indexing job with `random` weights (no
pretrained weights can be downloaded here), and the services run as separate processes on
free loopback ports, exactly as `make run` starts them.
"""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path
from typing import Iterator

import pytest

from tests.support import SHARED, Services, write_csv

CATEGORIES = ["bed", "chair", "lamp", "sofa", "table"]
PER_CATEGORY = 6


def shared_data() -> Path:
    """The real photos; CI must have them, a developer's clone without them skips these tests."""
    if not (SHARED / "catalog").is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"{SHARED} is missing: CI runs with ../shared beside the clone")
        pytest.skip(f"real photos not found at {SHARED}")
    return SHARED


@pytest.fixture
def anyio_backend() -> str:
    """Async tests run on asyncio, as the services do (anyio's pytest plugin)."""
    return "asyncio"


@pytest.fixture(scope="session")
def shared() -> Path:
    return shared_data()


@pytest.fixture(scope="session")
def query_photos(shared: Path) -> list[tuple[Path, str]]:
    with open(shared / "queries" / "labels.csv", newline="") as fh:
        return [(shared / "queries" / row["file"], row["category"]) for row in csv.DictReader(fh)]


@pytest.fixture(scope="session")
def small_catalog(shared: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real catalogue in miniature: the first images of each category, with their products.csv rows."""
    root = tmp_path_factory.mktemp("catalog")
    with open(shared / "catalog" / "products.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    kept = []
    for category in CATEGORIES:
        for row in [r for r in rows if r["category"] == category][:PER_CATEGORY]:
            (root / category).mkdir(exist_ok=True)
            shutil.copy(shared / "catalog" / row["file"], root / row["file"])
            kept.append(row)
    write_csv(root / "products.csv", kept, list(rows[0]))
    return root


@pytest.fixture(scope="session")
def built_index(small_catalog: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from indexing.build import build_index

    root = tmp_path_factory.mktemp("index")
    build_index(small_catalog, root, "random", precision="fp32")
    return root


@pytest.fixture(scope="session")
def services(built_index: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    with Services(built_index, tmp_path_factory.mktemp("logs")).running() as stack:
        yield stack
