"""The gateway's app: its state (the search pipeline, the feedback store) and its routers.

The routes live in `gateway.routes`, one router per job; `create_app` builds the state in the
lifespan and includes them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial

import anyio
import httpx
import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.staticfiles import StaticFiles
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from gateway.analytics import Analytics, AnalyticsMetrics
from gateway.cross_origin import CrossOrigin, RefusedOrigins
from gateway.fair_shares import FairShares, Share
from gateway.feedback import Feedback, require_admin
from gateway.feedback_store import FeedbackStore, Limits, engine_url
from gateway.photo_handles import PhotoHandleMetrics
from gateway.query_ids import QueryIds
from gateway.routes import analytics, feedback, page, search, widget
from gateway.routes.dependencies import Pipeline, SearchAnalytics
from gateway.schemas import GatewayReadiness
from gateway.search import SearchPipeline
from gateway.search_log import SearchLog
from gateway.settings import GatewaySettings
from gateway.widget_assets import WidgetAssets
from lookalike.background import Supervised
from lookalike.errors import ApiError
from lookalike.service import create_service, metrics_of
from lookalike.upload_guard import install_upload_guard

log = logging.getLogger("lookalike.gateway")


SIGNING_SECRET = "signing"


def open_feedback_store(settings: GatewaySettings) -> FeedbackStore:
    """The feedback database, migrated to this code's schema (FeedbackDatabaseError stops the start-up)."""
    url = settings.feedback_db_url.get_secret_value() if settings.feedback_db_url else ""
    store = FeedbackStore(engine_url(url, settings.index),
                          Limits(settings.feedback_per_minute, settings.feedback_per_session,
                                 settings.feedback_retention_days * 86400))
    store.migrate()
    return store


def signing_secret(settings: GatewaySettings, store: FeedbackStore) -> bytes:
    """GATEWAY_SIGNING_SECRET, else the one kept in the feedback database for every replica that shares it."""
    if settings.signing_secret is not None:
        return settings.signing_secret.get_secret_value().encode()
    return store.shared_secret(SIGNING_SECRET)


async def prune_now_and_then(what: str, prune: Callable[[], Awaitable[int]], every_s: float) -> None:
    """Delete `what` past its retention period now and then; reads ignore such rows anyway, so a failed round
    loses nothing.

    A round that fails (the database down, locked, or refusing) is logged and the next one tries
    again; anything else kills the loop, and its `Supervised` done-callback logs it and restarts it.
    """
    while True:
        try:
            pruned = await prune()
        except (ApiError, sa.exc.SQLAlchemyError):
            log.exception("pruning %s failed; the next round is in %g s", what, every_s)
        else:
            if pruned:
                log.info("pruned %d %s past the retention period", pruned, what)
        await asyncio.sleep(every_s)


def operator_only(settings: GatewaySettings) -> Callable[[Request], None]:
    """The gateway's `/metrics` is on the public port: it needs LOOKALIKE_ADMIN_TOKEN, as the operator routes do."""
    token = settings.admin_token.get_secret_value() if settings.admin_token else None

    def guard(request: Request) -> None:
        require_admin(request, token)

    return guard


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
        app.state.widget = await anyio.to_thread.run_sync(WidgetAssets.load)
        app.state.pipeline = SearchPipeline(settings, transport, photo_metrics)
        store = await anyio.to_thread.run_sync(open_feedback_store, settings)
        secret = await anyio.to_thread.run_sync(signing_secret, settings, store)
        app.state.secret = secret
        app.state.query_ids = QueryIds(secret, settings.query_id_ttl_s)
        app.state.feedback = Feedback(store, app.state.pipeline.similarity, app.state.query_ids, secret,
                                      settings.learnt_weight, settings.learnt_full_at, settings.learnt_min_networks)
        search_log = SearchLog(store.engine, settings.analytics_retention_days * 86400)
        app.state.analytics = Analytics(search_log, secret, analytics_metrics, enabled=settings.analytics,
                                        queue_size=settings.analytics_queue, batch_size=settings.analytics_batch)
        app.state.analytics.start()
        restart_after_s = min(60.0, settings.feedback_prune_every_s)
        app.state.pruning = pruning = [
            Supervised("prune-feedback", partial(prune_now_and_then, "feedback votes", app.state.feedback.prune,
                                                 settings.feedback_prune_every_s), restart_after_s=restart_after_s),
            Supervised("prune-search-log", partial(prune_now_and_then, "search-log rows and events",
                                                   partial(anyio.to_thread.run_sync, search_log.prune),
                                                   settings.feedback_prune_every_s), restart_after_s=restart_after_s)]
        for task in pruning:
            task.start()
        yield
        await app.state.analytics.stop()
        for task in pruning:
            await task.stop()
        store.dispose()
        await app.state.pipeline.aclose()

    app = create_service(
        "Lookalike", lifespan=lifespan, readiness=readiness, readiness_model=GatewayReadiness,
        readiness_doc="Ready when both services are ready and serve the same model's index.",
        description="Photo in, similar products out.", metrics_guard=operator_only(settings))
    install_upload_guard(app, settings.upload_limits, metrics_of(app))
    app.state.fair_shares = FairShares(
        {"searches": Share(settings.searches_per_minute, settings.search_burst),
         "votes": Share(settings.votes_per_minute, settings.vote_burst),
         "events": Share(settings.events_per_minute, settings.event_burst)},
        settings.rate_limit_max_clients, metrics_of(app),
        operator_token=settings.admin_token.get_secret_value() if settings.admin_token else None)
    photo_metrics = PhotoHandleMetrics(metrics_of(app))
    analytics_metrics = AnalyticsMetrics(metrics_of(app))
    # Outermost but one, so that every answer, a 413 from the upload guard too, carries the CORS headers a listed site needs.
    app.add_middleware(CrossOrigin, allowed=settings.allowed_origins, refused=RefusedOrigins(metrics_of(app)))
    if settings.forwarded_allow_ips:  # outermost, so every middleware and route sees the real client
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.forwarded_allow_ips)
    app.mount("/static", StaticFiles(directory=page.STATIC), name="static")
    for router in (page.router, search.router, feedback.router, widget.router, analytics.router):
        app.include_router(router)
    return app
