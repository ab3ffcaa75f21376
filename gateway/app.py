"""The gateway's app: its state (the search pipeline, the feedback store) and its routers.

The routes live in `gateway.routes`, one router per job; `create_app` builds the state in the
lifespan and includes them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

import anyio
import httpx
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from gateway.cross_origin import CrossOrigin, RefusedOrigins
from gateway.feedback import Feedback
from gateway.feedback_store import FeedbackStore, Limits, engine_url
from gateway.photo_handles import PhotoHandleMetrics
from gateway.query_ids import QueryIds
from gateway.routes import feedback, page, search, widget
from gateway.routes.dependencies import Pipeline
from gateway.schemas import GatewayReadiness
from gateway.search import SearchPipeline
from gateway.settings import GatewaySettings
from gateway.widget_assets import WidgetAssets
from lookalike.errors import FeedbackUnavailable
from lookalike.service import create_service, metrics_of
from lookalike.upload_guard import install_upload_guard

log = logging.getLogger("lookalike.gateway")


SIGNING_SECRET = "signing"


def open_feedback_store(settings: GatewaySettings) -> FeedbackStore:
    """The feedback database, migrated to this code's schema (FeedbackDatabaseError stops the start-up)."""
    store = FeedbackStore(engine_url(settings.feedback_db_url, settings.index),
                          Limits(settings.feedback_per_minute, settings.feedback_per_session,
                                 settings.feedback_retention_days * 86400))
    store.migrate()
    return store


def signing_secret(settings: GatewaySettings, store: FeedbackStore) -> bytes:
    """GATEWAY_SIGNING_SECRET, else the one kept in the feedback database for every replica that shares it."""
    if settings.signing_secret is not None:
        return settings.signing_secret.get_secret_value().encode()
    return store.shared_secret(SIGNING_SECRET)


async def prune_feedback(feedback: Feedback, every_s: float) -> None:
    """Delete expired votes now and then; lookups ignore them anyway, so a missed round loses nothing."""
    while True:
        with suppress(FeedbackUnavailable):
            pruned = await feedback.prune()
            if pruned:
                log.info("pruned %d feedback votes past the retention period", pruned)
        await asyncio.sleep(every_s)


async def readiness(pipeline: Pipeline) -> GatewayReadiness:
    return await pipeline.readiness()


def create_app(settings: GatewaySettings | None = None, transport: httpx.AsyncBaseTransport | None = None) -> FastAPI:
    """The gateway; `transport` stands in for the network to both services (tests use `httpx.MockTransport`)."""
    settings = settings or GatewaySettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.settings = settings
        app.state.widget = await anyio.to_thread.run_sync(WidgetAssets.load)
        app.state.pipeline = SearchPipeline(settings, transport, photo_metrics)
        store = await anyio.to_thread.run_sync(open_feedback_store, settings)
        secret = await anyio.to_thread.run_sync(signing_secret, settings, store)
        app.state.secret = secret
        app.state.query_ids = QueryIds(secret, settings.query_id_ttl_s)
        app.state.feedback = Feedback(store, app.state.pipeline.similarity, app.state.query_ids, secret,
                                      settings.learnt_weight, settings.learnt_full_at, settings.learnt_min_networks)
        pruning = asyncio.create_task(prune_feedback(app.state.feedback, settings.feedback_prune_every_s))
        yield
        pruning.cancel()
        with suppress(asyncio.CancelledError):
            await pruning
        store.dispose()
        await app.state.pipeline.aclose()

    app = create_service(
        "Lookalike", lifespan=lifespan, readiness=readiness, readiness_model=GatewayReadiness,
        readiness_doc="Ready when both services are ready and serve the same model's index.",
        description="Photo in, similar products out.")
    install_upload_guard(app, settings.upload_limits, metrics_of(app))
    photo_metrics = PhotoHandleMetrics(metrics_of(app))
    # Outermost but one, so that every answer, a 413 from the upload guard too, carries the CORS headers a listed site needs.
    app.add_middleware(CrossOrigin, allowed=settings.allowed_origins, refused=RefusedOrigins(metrics_of(app)))
    if settings.forwarded_allow_ips:  # outermost, so every middleware and route sees the real client
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.forwarded_allow_ips)
    app.mount("/static", StaticFiles(directory=page.STATIC), name="static")
    for router in (page.router, search.router, feedback.router, widget.router):
        app.include_router(router)
    return app
