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
from starlette.middleware.cors import CORSMiddleware
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from gateway.analytics import Analytics, AnalyticsMetrics
from gateway.feedback import Feedback
from gateway.feedback_store import FeedbackStore, Limits, engine_url
from gateway.photo_handles import PhotoHandleMetrics
from gateway.query_ids import QueryIds
from gateway.routes import analytics, feedback, page, search
from gateway.routes.dependencies import Pipeline, SearchAnalytics
from gateway.schemas import GatewayReadiness
from gateway.search import SearchPipeline
from gateway.search_log import SearchLog
from gateway.settings import GatewaySettings
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


async def prune_search_log(search_log: SearchLog, every_s: float) -> None:
    """Delete search-log rows and events past ANALYTICS_RETENTION_DAYS now and then."""
    while True:
        with suppress(FeedbackUnavailable):
            pruned = await anyio.to_thread.run_sync(search_log.prune)
            if pruned:
                log.info("pruned %d search-log rows and events past the retention period", pruned)
        await asyncio.sleep(every_s)


async def readiness(pipeline: Pipeline, search_analytics: SearchAnalytics) -> GatewayReadiness:
    ready = await pipeline.readiness()
    if search_analytics.failure is not None:  # never silently: a dead writer would lose every search's row
        return ready.model_copy(update={"ready": False, "reason": search_analytics.failure})
    return ready


def create_app(settings: GatewaySettings | None = None, transport: httpx.AsyncBaseTransport | None = None) -> FastAPI:
    """The gateway; `transport` stands in for the network to both services (tests use `httpx.MockTransport`)."""
    settings = settings or GatewaySettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.settings = settings
        app.state.pipeline = SearchPipeline(settings, transport, photo_metrics)
        store = await anyio.to_thread.run_sync(open_feedback_store, settings)
        secret = await anyio.to_thread.run_sync(signing_secret, settings, store)
        app.state.secret = secret
        app.state.query_ids = QueryIds(secret, settings.query_id_ttl_s)
        app.state.feedback = Feedback(store, app.state.pipeline.similarity, settings.learnt_weight,
                                      settings.learnt_full_at)
        search_log = SearchLog(store.engine, settings.analytics_retention_days * 86400)
        app.state.analytics = Analytics(search_log, secret, analytics_metrics, enabled=settings.analytics,
                                        queue_size=settings.analytics_queue, batch_size=settings.analytics_batch)
        app.state.analytics.start()
        pruning = [asyncio.create_task(prune_feedback(app.state.feedback, settings.feedback_prune_every_s)),
                   asyncio.create_task(prune_search_log(search_log, settings.feedback_prune_every_s))]
        yield
        await app.state.analytics.stop()
        for task in pruning:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
        store.dispose()
        await app.state.pipeline.aclose()

    app = create_service(
        "Lookalike", lifespan=lifespan, readiness=readiness, readiness_model=GatewayReadiness,
        readiness_doc="Ready when both services are ready and serve the same model's index.",
        description="Photo in, similar products out.")
    install_upload_guard(app, settings.upload_limits, metrics_of(app))
    photo_metrics = PhotoHandleMetrics(metrics_of(app))
    analytics_metrics = AnalyticsMetrics(metrics_of(app))
    if settings.cors_allow_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_allow_origins,
                           allow_methods=["GET", "POST", "DELETE"],
                           allow_headers=["X-Request-ID", "X-Session-ID", "Content-Type"], expose_headers=["X-Request-ID"])
    if settings.forwarded_allow_ips:  # outermost, so every middleware and route sees the real client
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.forwarded_allow_ips)
    app.mount("/static", StaticFiles(directory=page.STATIC), name="static")
    for router in (page.router, search.router, feedback.router, analytics.router):
        app.include_router(router)
    return app
