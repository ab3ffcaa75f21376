"""The similarity service's HTTP routes: embedding in, nearest catalogue items out."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import AsyncIterator

import anyio
import faiss
from fastapi import FastAPI, Query, Request
from fastapi.responses import FileResponse, JSONResponse

from lookalike.contracts import MAX_K, Hit, ReloadResponse, SearchRequest, SearchResponse, SimilarityReadiness
from lookalike.errors import ApiError, ErrorEnvelope, install_error_handlers
from lookalike.index_layout import CatalogItem, ServedVersion
from lookalike.observability import install_observability
from similarity_service.catalog_index import CatalogIndex
from similarity_service.settings import SimilaritySettings

ERRORS = {404: {"model": ErrorEnvelope}, 422: {"model": ErrorEnvelope}, 503: {"model": ErrorEnvelope}}


def create_app(settings: SimilaritySettings | None = None) -> FastAPI:
    settings = settings or SimilaritySettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        faiss.omp_set_num_threads(settings.faiss_threads)
        serving: ServedVersion[CatalogIndex] = ServedVersion(settings.index, CatalogIndex.load, "similarity")
        try:
            serving.reload()
        except ApiError:
            pass  # not ready; /readyz says why, and /v1/reload retries
        app.state.serving = serving
        metrics.labelled_gauge("similarity_index_items", "Catalogue items in the serving index, per category.",
                               "category", lambda: serving.current.items_per_category() if serving.current else {})
        yield

    app = FastAPI(title="Lookalike similarity", version="1", lifespan=lifespan)
    install_error_handlers(app)
    metrics = install_observability(app)

    def serving(request: Request) -> ServedVersion[CatalogIndex]:
        return request.app.state.serving

    @app.post("/v1/search", response_model=SearchResponse, responses=ERRORS)
    async def search(body: SearchRequest, request: Request) -> SearchResponse:
        """The k catalogue items of `category` nearest to the embedding, by cosine similarity."""
        catalog = serving(request).require()
        hits = catalog.search(body.category, body.vector(), body.k, frozenset(body.exclude_ids))
        return SearchResponse(category=body.category, hits=hits, index_version=catalog.version)

    @app.get("/v1/items/{item_id}", response_model=CatalogItem, responses=ERRORS)
    async def item(item_id: str, request: Request) -> CatalogItem:
        return serving(request).require().item(item_id)

    @app.get("/v1/items/{item_id}/similar", response_model=SearchResponse, responses=ERRORS)
    async def similar(item_id: str, request: Request, k: int = Query(10, ge=1, le=MAX_K)) -> SearchResponse:
        """More like this catalogue item, without an upload."""
        catalog = serving(request).require()
        hits: list[Hit] = catalog.similar_to(item_id, k)
        return SearchResponse(category=catalog.item(item_id).category, hits=hits, index_version=catalog.version)

    @app.get("/v1/items/{item_id}/image", response_class=FileResponse, responses=ERRORS)
    async def image(item_id: str, request: Request) -> FileResponse:
        """The item's thumbnail. Only catalogue items are served, looked up by id, never by path."""
        path = serving(request).require().thumbnail(item_id)
        return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "public, max-age=3600"})

    @app.post("/v1/reload", response_model=ReloadResponse, responses=ERRORS)
    async def reload(request: Request) -> ReloadResponse:
        """Switch to the index's current version; requests in flight finish on the old one."""
        version, previous = await anyio.to_thread.run_sync(serving(request).reload)
        return ReloadResponse(index_version=version, previous_version=previous)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """The process is alive."""
        return {"status": "ok"}

    @app.get("/readyz", response_model=SimilarityReadiness, responses={503: {"model": SimilarityReadiness}})
    async def readyz(request: Request) -> JSONResponse:
        """Ready when an index version is loaded."""
        state = serving(request)
        catalog = state.current
        body = SimilarityReadiness(
            ready=catalog is not None,
            reason=state.not_ready_reason,
            index_version=catalog.version if catalog else None,
            model_id=catalog.manifest.model.model_id if catalog else None,
            weights=catalog.manifest.model.weights if catalog else None,
            categories=catalog.items_per_category() if catalog else {},
        )
        return JSONResponse(body.model_dump(), status_code=200 if body.ready else 503)

    return app
