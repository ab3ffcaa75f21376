"""Words follow the catalogue: a re-index changes what words find with no restart, a failed one changes nothing."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from indexing import build
from indexing.build import BuildPlan, build_index
from indexing.notify import notify_reload
from lookalike.catalog.layout import SYNONYMS, IndexLayout
from tests.gateway.text_catalog import rows_of, serving, text_catalog
from tests.support import INTERNAL_TOKEN, Services, write_csv

NEW_NAME = "ZEBRAWOOD lounger"


@pytest.fixture(scope="module")
def catalog(shared: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return text_catalog(shared, tmp_path_factory.mktemp("reindex-catalog"))


@pytest.fixture(scope="module")
def stack(catalog: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    with serving(catalog, tmp_path_factory, "reindex") as services:
        yield services


def names_for(stack: Services, q: str) -> list[str]:
    response = httpx.get(f"{stack.gateway}/api/v1/search/text", params={"q": q, "k": 50}, timeout=30)
    assert response.status_code == 200, response.text
    return [r["name"] for r in response.json()["results"]]


def reindex(stack: Services, catalog: Path) -> None:
    """What `make index` does: build and publish, then tell the running services to reload."""
    build_index(BuildPlan(catalog, stack.index, "random", precision="fp32"))
    lines = notify_reload([stack.url("classifier"), stack.url("similarity")], INTERNAL_TOKEN)
    assert all("now serving" in line for line in lines), lines


def rename_first(catalog: Path, old: str, new: str) -> str:
    rows = rows_of(catalog)
    row = next(r for r in rows if r["name"] == old)
    row["name"] = new
    write_csv(catalog / "products.csv", rows, list(rows[0]))
    return row["id"]


def test_a_renamed_product_is_found_under_its_new_name_after_a_reindex_with_no_restart(stack: Services,
                                                                                      catalog: Path) -> None:
    old = next(r["name"] for r in rows_of(catalog) if r["category"] == "table")
    pids = {name: stack.pid(name) for name in ("gateway", "similarity")}
    assert not names_for(stack, "zebrawood")
    rename_first(catalog, old, NEW_NAME)
    reindex(stack, catalog)
    assert names_for(stack, "zebrawood") == [NEW_NAME]
    assert names_for(stack, "zebraw") == [NEW_NAME]  # and as a prefix, while it is typed
    assert {name: stack.pid(name) for name in pids} == pids


def test_a_store_synonyms_file_overrides_the_default_list(stack: Services, catalog: Path) -> None:
    assert any("sofa" in name.lower() for name in names_for(stack, "couch"))
    (catalog / SYNONYMS).write_text("# this store calls its lamps couches\ncouch => lamp\n")
    try:
        reindex(stack, catalog)
        found = names_for(stack, "couch")
        assert found and all("lamp" in name.lower() for name in found)
    finally:
        (catalog / SYNONYMS).unlink()
    reindex(stack, catalog)
    assert any("sofa" in name.lower() for name in names_for(stack, "couch"))


def test_a_build_that_fails_halfway_leaves_the_old_text_index_serving(stack: Services, catalog: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    serving = IndexLayout(stack.index).current()
    before = names_for(stack, "poang")
    rename_first(catalog, before[0], "QUAGGA armchair")
    real = build.write_text_index

    def write_half_then_fail(path: Path, *args: object, **kwargs: object) -> None:
        real(path, *args, **kwargs)
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(build, "write_text_index", write_half_then_fail)
    with pytest.raises(sqlite3.OperationalError):
        build_index(BuildPlan(catalog, stack.index, "random", precision="fp32"))
    assert IndexLayout(stack.index).current() == serving
    assert not list((stack.index / "versions").glob(".build-*"))
    notify_reload([stack.url("similarity")], INTERNAL_TOKEN)
    assert names_for(stack, "quagga") == [] and names_for(stack, "poang") == before
    monkeypatch.undo()
    reindex(stack, catalog)
    assert names_for(stack, "quagga") == ["QUAGGA armchair"]
