"""The similarity service's routes run on worker threads: a slow search holds up neither `/readyz` nor
another search. In process, on the suite's real index (random weights), over ASGI."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import faiss
import httpx
import numpy as np
import pytest

from lookalike.catalog.index import CatalogIndex
from lookalike.catalog.layout import IndexLayout, read_manifest
from lookalike.contracts import encode_embedding
from similarity_service.app import create_app
from similarity_service.settings import SimilaritySettings

pytestmark = pytest.mark.anyio
STUCK_AT_MOST_S = 20.0  # a safety net: only a broken service waits this long


@pytest.fixture
async def similarity(built_index: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(SimilaritySettings(index=built_index))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://similarity",
                                     timeout=60) as client:
            yield client


async def test_a_slow_search_holds_up_neither_readiness_nor_another_search(
        similarity: httpx.AsyncClient, built_index: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The search of `bed` blocks its thread (as a long Faiss search would) until the other requests have answered."""
    entered, release = threading.Event(), threading.Event()
    openmp_threads: list[int] = []
    search = CatalogIndex.search

    def slow_for_beds(self: CatalogIndex, category: str, *args: Any, **kwargs: Any) -> Any:
        openmp_threads.append(faiss.omp_get_max_threads())
        if category == "bed":
            entered.set()
            release.wait(STUCK_AT_MOST_S)
        return search(self, category, *args, **kwargs)

    monkeypatch.setattr(CatalogIndex, "search", slow_for_beds)
    dim = read_manifest(IndexLayout(built_index).require_current()).embedding_dim
    body = {"embedding": encode_embedding(np.ones(dim, dtype=np.float32)), "k": 3}
    finished: list[str] = []

    async def call(name: str, method: str, path: str, **kwargs: Any) -> None:
        response = await similarity.request(method, path, **kwargs)
        assert response.status_code == 200, response.text
        finished.append(name)

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(partial(call, "slow search", "POST", "/v1/search", json={**body, "category": "bed"}))
        await anyio.to_thread.run_sync(entered.wait, STUCK_AT_MOST_S)  # the slow search holds its thread now
        await call("readyz", "GET", "/readyz")
        await call("other search", "POST", "/v1/search", json={**body, "category": "chair"})
        await call("text search", "GET", "/v1/search/text", params={"q": "chair"})
        release.set()
    assert finished == ["readyz", "other search", "text search", "slow search"]
    # On the worker threads too, Faiss runs SIMILARITY_FAISS_THREADS (1) threads, not one per core.
    assert openmp_threads == [1, 1]
