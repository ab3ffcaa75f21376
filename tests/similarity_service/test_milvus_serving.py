"""The stack on a real Milvus server: a search, re-index under load, rollback and pruning, and Milvus dying mid-run.

The three services run as real processes with VECTOR_STORE=milvus against the session's Milvus
standalone on loopback; shoppers' searches go through the gateway with real photos.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from indexing.build import BuildPlan, build_index
from indexing.notify import notify_reload
from indexing.versions import rollback
from lookalike.catalog.layout import IndexLayout, read_manifest
from lookalike.catalog.milvus_store import MilvusConnection
from lookalike.settings import VectorStoreSettings
from tests.support import INTERNAL_TOKEN, Services


def photo_of(catalog: Path) -> bytes:
    return next((catalog / "chair").glob("*.jpg")).read_bytes()


def search(stack: Services, photo: bytes) -> httpx.Response:
    return httpx.post(f"{stack.gateway}/api/v1/search", files={"image": ("chair.jpg", photo, "image/jpeg")},
                      timeout=60)


@pytest.fixture(scope="module")
def milvus_env(milvus_server: Any) -> dict[str, str]:
    return {"VECTOR_STORE": "milvus", "MILVUS_URI": milvus_server.uri, "MILVUS_TIMEOUT_S": "3"}


@pytest.fixture(scope="module")
def store(milvus_server: Any) -> VectorStoreSettings:
    return VectorStoreSettings(vector_store="milvus", milvus_uri=milvus_server.uri)


@pytest.fixture(scope="module")
def stack(priced_catalog: Path, store: VectorStoreSettings, milvus_env: dict[str, str],
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    index = tmp_path_factory.mktemp("milvus-served-index")
    build_index(BuildPlan(priced_catalog, index, "random", precision="fp32", vector_store=store))
    with Services(index, tmp_path_factory.mktemp("logs"), extra_env=milvus_env).running() as services:
        yield services


def collection_of(index: Path, version: str) -> str:
    store = read_manifest(IndexLayout(index).versions / version).vector_store
    assert store is not None and store.collection
    return store.collection


def test_a_catalogue_photo_finds_itself_first_through_milvus(stack: Services, priced_catalog: Path) -> None:
    response = search(stack, photo_of(priced_catalog))
    assert response.status_code == 200, response.text
    assert response.json()["results"][0]["score"] > 0.999


def test_reindex_under_load_fails_no_search_and_switches_to_the_new_collection(
        stack: Services, priced_catalog: Path, store: VectorStoreSettings) -> None:
    photo, statuses, stop = photo_of(priced_catalog), [], threading.Event()

    def shop() -> None:
        while not stop.is_set():
            statuses.append(search(stack, photo).status_code)

    shopper = threading.Thread(target=shop)
    shopper.start()
    try:
        summary = build_index(BuildPlan(priced_catalog, stack.index, "random", precision="fp32", vector_store=store))
        notify_reload([stack.url("classifier"), stack.url("similarity")], INTERNAL_TOKEN)
        time.sleep(2)
    finally:
        stop.set()
        shopper.join(timeout=120)
    assert statuses and set(statuses) == {200}, f"{len(statuses)} searches: {sorted(set(statuses))}"
    ready = httpx.get(f"{stack.url('similarity')}/readyz", timeout=10).json()
    assert ready["index_version"] == summary.version


def test_rollback_serves_the_older_collection_and_pruning_drops_collections(
        stack: Services, priced_catalog: Path, store: VectorStoreSettings, milvus_server: Any) -> None:
    client = MilvusConnection(milvus_server.uri).client
    before = IndexLayout(stack.index).published()
    first = build_index(BuildPlan(priced_catalog, stack.index, "random", precision="fp32", vector_store=store, keep=2))
    dropped = [v for v in before if v not in IndexLayout(stack.index).published()]
    assert dropped, "keep=2 pruned the oldest versions"
    assert all(not client.has_collection("lookalike_" + v.replace("-", "_").replace(".", "_")) for v in dropped)
    version, previous = rollback(stack.index)
    assert previous == first.version
    notify_reload([stack.url("classifier"), stack.url("similarity")], INTERNAL_TOKEN)
    ready = httpx.get(f"{stack.url('similarity')}/readyz", timeout=10).json()
    assert ready["index_version"] == version
    assert client.has_collection(collection_of(stack.index, version))
    assert search(stack, photo_of(priced_catalog)).status_code == 200


def test_milvus_killed_mid_run_gives_a_clear_503_then_searches_come_back_with_no_restart(
        stack: Services, priced_catalog: Path, milvus_server: Any) -> None:
    photo = photo_of(priced_catalog)
    pids = {name: stack.pid(name) for name in stack.modules}
    milvus_server.kill()
    try:
        refused = search(stack, photo)  # MILVUS_TIMEOUT_S=3, below the gateway's 5 s: the reason reaches the shopper
        assert refused.status_code == 503
        error = refused.json()["error"]
        assert error["code"] == "vector_store_unavailable"
        assert "vector store" in error["message"] and "try again" in error["message"]
        assert milvus_server.uri.split("://")[-1] not in refused.text  # its address: in the log only
        ready = httpx.get(f"{stack.url('similarity')}/readyz", timeout=30)  # the internal port: detailed
        assert ready.status_code == 503 and "Milvus" in ready.json()["reason"]
    finally:
        milvus_server.start()  # on the same port, once the dead server's connections let go of it
    deadline = time.monotonic() + 180
    while (status := search(stack, photo).status_code) != 200 and time.monotonic() < deadline:
        time.sleep(2)
    assert status == 200
    assert httpx.get(f"{stack.url('similarity')}/readyz", timeout=30).status_code == 200
    assert {name: stack.pid(name) for name in stack.modules} == pids  # no service was restarted
