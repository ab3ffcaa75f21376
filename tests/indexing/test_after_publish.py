"""Publishing is the last step that can fail a build: what comes after it (cache pruning, reloads, version
pruning) is best-effort, logged and reported, and never drops what now serves, with Faiss or with Milvus."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import indexing.build
from indexing.__main__ import format_summary
from indexing.build import BuildPlan, BuildSummary, build_index
from indexing.cache import EmbeddingCache
from indexing.lock import exclusive
from indexing.versions import prune_versions
from lookalike.catalog import milvus_store
from lookalike.catalog.index import CatalogIndex
from lookalike.catalog.layout import IndexLayout, read_items, read_manifest
from lookalike.catalog.manifest import CatalogItem
from lookalike.catalog.milvus_store import MilvusConnection
from lookalike.settings import VectorStoreSettings
from tests.indexing.test_incremental import seeded_index


def failing(error: BaseException) -> Any:
    def prune_the_cache(cache: EmbeddingCache, items: list[CatalogItem]) -> None:
        raise error

    return prune_the_cache


def finds_itself(version_dir: Path, connection: MilvusConnection | None = None) -> bool:
    catalog = CatalogIndex.load(version_dir, open_vectors=milvus_store.opener(connection) if connection else None)
    item = read_items(version_dir)[0]
    hits = catalog.search(item.category, catalog.product_vectors([item.id])[0], 3)
    return item.id in [hit.id for hit in hits]


def test_a_failure_after_the_publish_is_reported_and_the_new_version_serves(
        small_catalog: Path, built_index: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = seeded_index(built_index, tmp_path / "index")
    first = build_index(BuildPlan(small_catalog, root, "random", precision="fp32"))
    monkeypatch.setattr(indexing.build, "forget_departed", failing(OSError(28, "No space left on device")))
    second = build_index(BuildPlan(small_catalog, root, "random", precision="fp32", keep=1))
    current = IndexLayout(root).current()
    assert current is not None and current.name == second.version != first.version
    assert second.after_publish_failures == ["pruning the embedding cache failed: [Errno 28] No space left on device"]
    assert second.pruned == [first.version]  # the steps after the failing one still ran
    assert "No space left on device" in format_summary(second)
    assert finds_itself(current)


def test_ctrl_c_after_the_publish_leaves_the_new_version_in_place(
        small_catalog: Path, built_index: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = seeded_index(built_index, tmp_path / "index")
    first = build_index(BuildPlan(small_catalog, root, "random", precision="fp32"))
    monkeypatch.setattr(indexing.build, "forget_departed", failing(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        build_index(BuildPlan(small_catalog, root, "random", precision="fp32"))
    current = IndexLayout(root).current()
    assert current is not None and current.name != first.version
    assert finds_itself(current)


def test_a_failure_before_the_publish_leaves_nothing_behind(
        small_catalog: Path, built_index: Path, tmp_path: Path) -> None:
    root = seeded_index(built_index, tmp_path / "index")
    first = build_index(BuildPlan(small_catalog, root, "random", precision="fp32"))

    def refuse(previous: Path | None, items: list[CatalogItem]) -> None:
        raise OSError("refused at the last moment")

    with pytest.raises(OSError):
        build_index(BuildPlan(small_catalog, root, "random", precision="fp32", before_publish=refuse))
    layout = IndexLayout(root)
    assert layout.published() == [first.version] and layout.current() == layout.versions / first.version
    assert not list(layout.versions.glob(".build-*"))


def test_pruning_spares_every_version_a_running_service_reported(
        small_catalog: Path, built_index: Path, tmp_path: Path) -> None:
    root = seeded_index(built_index, tmp_path / "index")
    versions = [build_index(BuildPlan(small_catalog, root, "random", precision="fp32")).version for _ in range(3)]
    layout = IndexLayout(root)
    with exclusive(root):
        deleted = prune_versions(layout, 1, held={versions[0]})  # a service whose reload failed still serves v0
    assert deleted == [versions[1]]
    assert layout.published() == [versions[0], versions[2]]


@pytest.fixture(scope="module")
def milvus(milvus_server: Any) -> tuple[VectorStoreSettings, MilvusConnection]:
    return (VectorStoreSettings(vector_store="milvus", milvus_uri=milvus_server.uri),
            MilvusConnection(milvus_server.uri))


def collection_of(version_dir: Path) -> str:
    store = read_manifest(version_dir).vector_store
    assert store is not None and store.collection
    return store.collection


@pytest.mark.parametrize("failure", [OSError(5, "Input/output error"), KeyboardInterrupt()],
                         ids=["error", "ctrl-c"])
def test_with_milvus_a_failure_after_the_publish_keeps_the_new_collection(
        small_catalog: Path, built_index: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        milvus: tuple[VectorStoreSettings, MilvusConnection], failure: BaseException) -> None:
    store, connection = milvus
    root = seeded_index(built_index, tmp_path / "index")
    first = build_index(BuildPlan(small_catalog, root, "random", precision="fp32", vector_store=store))
    monkeypatch.setattr(indexing.build, "forget_departed", failing(failure))
    plan = BuildPlan(small_catalog, root, "random", precision="fp32", vector_store=store, keep=1)
    summary: BuildSummary | None = None
    if isinstance(failure, KeyboardInterrupt):
        with pytest.raises(KeyboardInterrupt):
            build_index(plan)
    else:
        summary = build_index(plan)
    current = IndexLayout(root).current()
    assert current is not None and current.name != first.version
    assert connection.client.has_collection(collection_of(current))
    assert finds_itself(current, connection)
    if summary is not None:
        assert summary.after_publish_failures == ["pruning the embedding cache failed: [Errno 5] Input/output error"]
        assert summary.pruned == [first.version]
