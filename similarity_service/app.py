"""The similarity service's app: the served index version, its readiness, and its routes."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING

import anyio
import faiss
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool

from lookalike.catalog.hybrid import Fusion
from lookalike.catalog.index import CatalogIndex, VectorOpener
from lookalike.catalog.refine import RocchioWeights
from lookalike.catalog.text_embedding import TextModels
from lookalike.contracts import SimilarityReadiness
from lookalike.served_version import ServedVersion
from lookalike.service import create_service, metrics_of, state_getter
from lookalike.settings import InternalAccess, VectorStoreSettings
from similarity_service.routes import Serving, ServingDep, router
from similarity_service.settings import SimilaritySettings

if TYPE_CHECKING:  # pymilvus (and the pandas it imports) costs about 90 MB of RSS: imported only for VECTOR_STORE=milvus
    from lookalike.catalog.milvus_store import MilvusConnection

log = logging.getLogger("lookalike.similarity")


async def load_once_milvus_answers(serving: Serving, milvus: MilvusConnection, every_s: float) -> None:
    """Milvus was down when the service started: load the current version once it answers.

    A background task, so that /readyz only ever reports (a probe every few seconds must not start a full
    load each time); it ends once a version is loaded, by this or by a reload.
    """
    while serving.current is None:
        await anyio.sleep(every_s)
        if serving.current is None and await anyio.to_thread.run_sync(milvus.check) is None:
            await anyio.to_thread.run_sync(serving.load_at_start)


async def readiness(request: Request, serving: ServingDep) -> SimilarityReadiness:
    milvus: MilvusConnection | None = request.app.state.milvus
    engine_down = await run_in_threadpool(milvus.check) if milvus is not None else None
    catalog = serving.current
    return SimilarityReadiness(
        ready=catalog is not None and engine_down is None,
        reason=engine_down or serving.not_ready_reason,
        index_version=catalog.version if catalog else None,
        model_id=catalog.manifest.model.model_id if catalog else None,
        weights=catalog.manifest.model.weights if catalog else None,
        text_model=catalog.meaning.embedder.info if catalog and catalog.meaning else None,
        categories=catalog.items_per_category() if catalog else {},
    )


def create_app(settings: SimilaritySettings | None = None, internal: InternalAccess | None = None) -> FastAPI:
    settings = settings or SimilaritySettings()
    internal = internal or InternalAccess()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        faiss.omp_set_num_threads(settings.faiss_threads)
        text_model = TextModels.from_setting(settings.text_model, settings.text_model_threads)
        fusion = Fusion(k=settings.text_fusion_k, bm25_weight=settings.text_fusion_bm25_weight,
                        meaning_weight=settings.text_fusion_meaning_weight, min_meaning=settings.text_min_meaning,
                        depth=settings.text_fusion_depth)
        store = VectorStoreSettings()
        milvus: MilvusConnection | None = None
        opener: VectorOpener | None = None
        if store.vector_store == "milvus":
            from lookalike.catalog import milvus_store

            milvus = milvus_store.connect(store)
            opener = milvus_store.opener(milvus)
        serving: Serving = ServedVersion(settings.index, partial(
            CatalogIndex.load, text_model=text_model, fusion=fusion, open_vectors=opener), "similarity")
        serving.load_at_start()
        app.state.milvus = milvus
        app.state.serving, app.state.faiss_threads = serving, settings.faiss_threads
        app.state.rocchio_weights = RocchioWeights(alpha=settings.rocchio_alpha, beta=settings.rocchio_beta,
                                                   gamma=settings.rocchio_gamma)
        metrics_of(app).labelled_gauge(
            "similarity_index_items", "Catalogue items in the serving index, per category.", "category",
            lambda: {name: float(n) for name, n in serving.current.items_per_category().items()} if serving.current else {})
        async with anyio.create_task_group() as background:
            if milvus is not None and serving.current is None:
                background.start_soon(load_once_milvus_answers, serving, milvus, settings.load_retry_s)
            yield
            background.cancel_scope.cancel()
        if milvus is not None:
            milvus.close()

    app = create_service(
        "Lookalike similarity", lifespan=lifespan, readiness=readiness, readiness_model=SimilarityReadiness,
        readiness_doc="Ready when an index version is loaded.", reload=state_getter("serving", ServedVersion),
        internal_token=internal.internal_token)
    app.include_router(router)
    return app
