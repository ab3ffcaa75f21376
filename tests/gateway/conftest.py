"""Fixtures the gateway's tests share.

- The feedback tests' databases: a real SQLite file, or a real PostgreSQL server.
- A catalogue the tests write themselves, and a stack serving it (the API and browser tests):
  eight chairs with two photos each, a `price` (the last chair has none) and an `in_stock`
  column, the first two chairs variants of one group (`item_group_id`); and four lamps with one
  photo each. The photos are real ones from ../shared, 500×500 JPEGs.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from gateway.feedback_store import engine_url
from tests.gateway.product_catalog import CHAIRS, LAMPS, chair_id
from tests.support import Services, demo_rows, postgres_server, require_postgres, write_catalog

_databases = itertools.count()


@pytest.fixture(scope="session")
def postgres() -> Iterator[str]:
    """One PostgreSQL server for the session (each test gets its own database in it)."""
    require_postgres()
    with postgres_server() as url:
        yield url


def fresh_postgres_database(server_url: str) -> str:
    """A new, empty database on the server; returns its URL."""
    name = f"feedback_{os.getpid()}_{next(_databases)}"
    engine = sa.create_engine(engine_url(server_url, Path()), isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return server_url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(params=["sqlite", "postgresql"])
def feedback_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """FEEDBACK_DB_URL for each backend: an SQLite file in a temp dir, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'feedback.sqlite3'}"
    return fresh_postgres_database(request.getfixturevalue("postgres"))


@pytest.fixture(scope="session")
def products_catalog(shared: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    rows = demo_rows(shared)
    chairs = [r["file"] for r in rows if r["category"] == "chair"][:2 * CHAIRS]
    lamps = [r["file"] for r in rows if r["category"] == "lamp"][:LAMPS]
    written = []
    for n in range(CHAIRS):
        for photo in chairs[2 * n:2 * n + 2]:
            written.append({"id": chair_id(n), "category": "chair", "name": f"Chair {n}", "file": photo,
                            "price": "" if n == CHAIRS - 1 else str(100 * (n + 1)),
                            "in_stock": "yes" if n % 2 == 0 else "no", "item_group_id": "pair" if n < 2 else ""})
    for n, photo in enumerate(lamps):
        written.append({"id": f"lamp-{n}", "category": "lamp", "name": f"Lamp {n}", "file": photo,
                        "price": str(5 * (n + 1)), "in_stock": "yes", "item_group_id": ""})
    return write_catalog(shared, tmp_path_factory.mktemp("products"), written)


@pytest.fixture(scope="session")
def products_stack(products_catalog: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    from indexing.build import BuildPlan, build_index

    index = tmp_path_factory.mktemp("products-index")
    build_index(BuildPlan(products_catalog, index, "random", precision="fp32"))
    # Batches of one: the classifier warms up one size only, which matters on a busy shared machine.
    with Services(index, tmp_path_factory.mktemp("products-logs")).running(
            env={"classifier": {"CLASSIFIER_MAX_BATCH": "1"}}, ready=()) as services:
        services.wait_ready("gateway", timeout_s=600)
        yield services
