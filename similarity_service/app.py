"""The similarity service's HTTP routes: embedding in, nearest catalogue items out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Annotated

import faiss
from fastapi import FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse

from lookalike.catalog import milvus_store
from lookalike.catalog.index import CatalogIndex
from lookalike.catalog.manifest import CatalogItem
from lookalike.catalog.milvus_store import MilvusConnection
from lookalike.catalog.refine import RocchioWeights, rocchio
from lookalike.contracts import (
    MAX_EXAMPLES,
    MAX_K,
    CatalogColumns,
    SearchRequest,
    SearchResponse,
    SimilarityReadiness,
    TextSearchResponse,
)
from lookalike.served_version import ServedVersion
from lookalike.service import create_service, error_responses, from_state, metrics_of, state_getter
from lookalike.settings import VectorStoreSettings
from similarity_service.settings import SimilaritySettings

ERRORS = error_responses(404, 422, 503)
Serving = ServedVersion[CatalogIndex]
ServingDep = Annotated[Serving, from_state("serving", ServedVersion)]
Where = Annotated[list[str] | None, Query(description="Filters `column<op>value`; see /v1/columns.")]
Marks = Annotated[list[str] | None, Query(max_length=MAX_EXAMPLES, description="Product ids, at most 20.")]


def create_app(settings: SimilaritySettings | None = None) -> FastAPI:
    settings = settings or SimilaritySettings()
    weights = RocchioWeights(alpha=settings.rocchio_alpha, beta=settings.rocchio_beta, gamma=settings.rocchio_gamma)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        faiss.omp_set_num_threads(settings.faiss_threads)
        store = VectorStoreSettings()
        milvus = milvus_store.connect(store) if store.vector_store == "milvus" else None
        open_vectors = milvus_store.opener(milvus) if milvus else None
        serving: Serving = ServedVersion(settings.index, partial(CatalogIndex.load, open_vectors=open_vectors),
                                         "similarity")
        serving.load_at_start()
        app.state.serving = serving
        app.state.milvus = milvus
        metrics_of(app).labelled_gauge(
            "similarity_index_items", "Catalogue items in the serving index, per category.", "category",
            lambda: {name: float(n) for name, n in serving.current.items_per_category().items()} if serving.current else {})
        yield
        if milvus is not None:
            milvus.close()

    async def readiness(request: Request, serving: ServingDep) -> SimilarityReadiness:
        milvus: MilvusConnection | None = request.app.state.milvus
        engine_down = await run_in_threadpool(milvus.check) if milvus is not None else None
        if milvus is not None and engine_down is None and serving.current is None:
            # Milvus was down when the service started: load the version now that it answers.
            await run_in_threadpool(serving.load_at_start)
        catalog = serving.current
        return SimilarityReadiness(
            ready=catalog is not None and engine_down is None,
            reason=engine_down or serving.not_ready_reason,
            index_version=catalog.version if catalog else None,
            model_id=catalog.manifest.model.model_id if catalog else None,
            weights=catalog.manifest.model.weights if catalog else None,
            categories=catalog.items_per_category() if catalog else {},
        )

    app = create_service(
        "Lookalike similarity", lifespan=lifespan, readiness=readiness, readiness_model=SimilarityReadiness,
        readiness_doc="Ready when an index version is loaded.", reload=state_getter("serving", ServedVersion))

    @app.post("/v1/search", response_model=SearchResponse, responses=ERRORS)
    async def search(body: SearchRequest, serving: ServingDep) -> SearchResponse:
        """The k product groups of `category` nearest to the embedding, by cosine similarity, that pass `where`.

        With `like` or `unlike`, the embedding first moves by Rocchio's rule, and unliked products are left out.
        """
        catalog = serving.require()
        vector = body.vector()
        if body.like or body.unlike:
            vector = rocchio(vector, catalog.product_vectors(body.like), catalog.product_vectors(body.unlike), weights)
        hits = catalog.search(body.category, vector, body.k, frozenset(body.exclude_ids) | frozenset(body.unlike),
                              exclude_groups=frozenset(body.exclude_groups), where=body.where,
                              min_score=body.min_score, q=body.q)
        return SearchResponse(category=body.category, hits=hits, index_version=catalog.version)

    @app.get("/v1/columns", response_model=CatalogColumns, responses=ERRORS)
    async def columns(serving: ServingDep) -> CatalogColumns:
        """The products.csv columns that `where` filters on, with their kind and range or common values."""
        catalog = serving.require()
        return CatalogColumns(columns=catalog.filterable_columns(), index_version=catalog.version)

    @app.get("/v1/search/text", response_model=TextSearchResponse, responses=ERRORS)
    async def search_text(serving: ServingDep, q: str = Query("", description="Words to search for."),
                          k: int = Query(10, ge=1, le=MAX_K), category: str | None = None,
                          where: Where = None, like: Marks = None, unlike: Marks = None) -> TextSearchResponse:
        """The k products best matching the words (bm25 over names, categories, text columns, tags), passing `where`.

        With `like` or `unlike`, the words' top products' mean vector moves by Rocchio's rule and the
        vectors rank the results (`refined`); unliked products are left out.
        """
        catalog = serving.require()
        if like or unlike:
            hits = catalog.refine_text(q, k, like or [], unlike or [], weights, category=category or None, where=where)
        else:
            hits = catalog.text_search(q, k, category or None, where)
        return TextSearchResponse(query=q, category=category or None, hits=hits, index_version=catalog.version,
                                  refined=bool(like or unlike))

    @app.get("/v1/items/{item_id}", response_model=CatalogItem, responses=ERRORS)
    async def item(item_id: str, serving: ServingDep) -> CatalogItem:
        return serving.require().item(item_id)

    @app.get("/v1/items/{item_id}/similar", response_model=SearchResponse, responses=ERRORS)
    async def similar(item_id: str, serving: ServingDep, k: int = Query(10, ge=1, le=MAX_K),
                      where: Where = None, min_score: float = Query(0.0, ge=0, le=1)) -> SearchResponse:
        """More like this product: all its photos as the query, its variant group left out."""
        catalog = serving.require()
        hits = catalog.similar_to(item_id, k, where=where, min_score=min_score)
        return SearchResponse(category=catalog.item(item_id).category, hits=hits, index_version=catalog.version)

    @app.get("/v1/items/{item_id}/image", response_class=FileResponse, responses=ERRORS)
    async def image(item_id: str, serving: ServingDep, photo: int = Query(0, ge=0, le=10_000)) -> FileResponse:
        """A product photo's thumbnail (its first by default). Only catalogue photos are served, by id, never by path."""
        path = serving.require().thumbnail(item_id, photo)
        return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "public, max-age=3600"})

    return app
