"""POST /v1/reload is an internal write route: it needs LOOKALIKE_INTERNAL_TOKEN, and /readyz never loads.

In process, on the suite's real index (random weights), over ASGI.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from pydantic import SecretStr

from lookalike.catalog.index import CatalogIndex
from lookalike.catalog.layout import IndexLayout, read_manifest
from lookalike.contracts import encode_embedding
from lookalike.errors import VectorStoreUnavailable
from lookalike.served_version import ServedVersion
from lookalike.settings import InternalAccess
from similarity_service.app import create_app
from similarity_service.settings import SimilaritySettings

pytestmark = pytest.mark.anyio
TOKEN = "a-long-random-internal-token-for-tests"


async def client_for(index: Path, token: str | None) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(SimilaritySettings(index=index), InternalAccess(internal_token=SecretStr(token) if token else None))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://similarity",
                                     timeout=60) as client:
            client.app = app  # type: ignore[attr-defined]
            yield client


@pytest.fixture
async def with_token(built_index: Path) -> AsyncIterator[httpx.AsyncClient]:
    async for client in client_for(built_index, TOKEN):
        yield client


@pytest.fixture
async def without_token(built_index: Path) -> AsyncIterator[httpx.AsyncClient]:
    async for client in client_for(built_index, None):
        yield client


async def test_a_reload_with_the_internal_token_switches(with_token: httpx.AsyncClient) -> None:
    response = await with_token.post("/v1/reload", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200, response.text
    assert response.json()["index_version"]


@pytest.mark.parametrize("authorization", [None, "Bearer wrong", f"Basic {TOKEN}", TOKEN])
async def test_a_reload_without_the_right_token_is_refused(with_token: httpx.AsyncClient,
                                                           authorization: str | None) -> None:
    response = await with_token.post("/v1/reload", headers={"Authorization": authorization} if authorization else {})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "internal_token_required"
    assert TOKEN not in response.text
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_with_no_token_configured_every_reload_is_refused_saying_how_to_set_one(
        without_token: httpx.AsyncClient) -> None:
    response = await without_token.post("/v1/reload", headers={"Authorization": "Bearer "})
    assert response.status_code == 401
    assert "LOOKALIKE_INTERNAL_TOKEN" in response.json()["error"]["message"]


class AnsweringMilvus:
    """A Milvus connection whose server answers: what /readyz sees once Milvus is back."""

    def check(self) -> str | None:
        return None

    def close(self) -> None:
        pass


async def test_readyz_never_starts_a_load(with_token: httpx.AsyncClient, built_index: Path) -> None:
    """A Milvus-backed service with nothing loaded: probes report it, a background retry or a reload loads."""
    loads: list[Path] = []

    def load(version_dir: Path) -> CatalogIndex:
        loads.append(version_dir)
        raise VectorStoreUnavailable("Milvus is not answering yet.")

    app = with_token.app  # type: ignore[attr-defined]
    app.state.milvus = AnsweringMilvus()
    app.state.serving = ServedVersion(built_index, load, "similarity")
    for _ in range(3):
        response = await with_token.get("/readyz")
        assert response.status_code == 503
    assert loads == []
    app.state.milvus = None


async def test_a_search_started_on_another_version_is_409_version_skew(with_token: httpx.AsyncClient,
                                                                       built_index: Path) -> None:
    current = IndexLayout(built_index).require_current()
    manifest = read_manifest(current)
    body = {"embedding": encode_embedding(np.ones(manifest.embedding_dim, dtype=np.float32)), "k": 3,
            "category": manifest.category_names[0]}
    skewed = await with_token.post("/v1/search", json={**body, "index_version": "20000101T000000.000000Z-000000"})
    assert skewed.status_code == 409 and skewed.json()["error"]["code"] == "version_skew"
    same = await with_token.post("/v1/search", json={**body, "index_version": current.name})
    assert same.status_code == 200 and same.json()["index_version"] == current.name
