"""The public routes: the web page, the search API, catalogue images."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Annotated

import anyio
import httpx
from fastapi import FastAPI, Query, Request
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.middleware.cors import CORSMiddleware

from gateway.feedback import SESSION_COOKIE, Feedback, has_session, new_session_id, require_admin, session_of
from gateway.feedback_store import FeedbackStore, Limits, engine_url
from gateway.photo_handles import PhotoHandleMetrics, refuse_body_with_handle
from gateway.schemas import (
    CatalogInfo,
    FeedbackForgotten,
    FeedbackStats,
    FeedbackStored,
    FeedbackVote,
    GatewayReadiness,
    LearntForQuery,
    SearchResult,
    SimilarItems,
    TextSearchResult,
)
from gateway.search import SearchPipeline
from gateway.settings import GatewaySettings
from lookalike.contracts import MAX_EXAMPLES, MAX_K, Box
from lookalike.errors import FeedbackUnavailable
from lookalike.service import create_service, error_responses, from_state, metrics_of
from lookalike.upload_guard import install_upload_guard
from lookalike.uploads import read_multipart_field

STATIC = Path(__file__).parent / "static"
ERRORS = error_responses(400, 404, 408, 410, 413, 415, 422, 503)
SEARCH_BODY = {"requestBody": {"required": False, "content": {"multipart/form-data": {"schema": {
    "type": "object",
    "properties": {"image": {"type": "string", "format": "binary", "description": "The photo; no body when `photo` names "
                                                                        "one searched lately."}}}}}}}
FEEDBACK_ERRORS = error_responses(401, 422, 429, 503)
Pipeline = Annotated[SearchPipeline, from_state("pipeline", SearchPipeline)]
Votes = Annotated[Feedback, from_state("feedback", Feedback)]
Liked = Annotated[list[str] | None, Query(max_length=MAX_EXAMPLES, description=(
    "Refine: a product id the shopper liked (repeatable, at most 20); the search moves toward it."))]
Unliked = Annotated[list[str] | None, Query(max_length=MAX_EXAMPLES, description=(
    "Refine: a product id marked 'not like this' (repeatable, at most 20); the search moves away from it "
    "and leaves it out."))]
log = logging.getLogger("lookalike.gateway")


def open_feedback_store(settings: GatewaySettings) -> FeedbackStore:
    """The feedback database, migrated to this code's schema (FeedbackDatabaseError stops the start-up)."""
    store = FeedbackStore(engine_url(settings.feedback_db_url, settings.index),
                          Limits(settings.feedback_per_minute, settings.feedback_per_session,
                                 settings.feedback_retention_days * 86400))
    store.migrate()
    return store


async def prune_feedback(feedback: Feedback, every_s: float) -> None:
    """Delete expired votes now and then; lookups ignore them anyway, so a missed round loses nothing."""
    while True:
        with suppress(FeedbackUnavailable):
            pruned = await feedback.prune()
            if pruned:
                log.info("pruned %d feedback votes past the retention period", pruned)
        await asyncio.sleep(every_s)
Where = Annotated[list[str] | None, Query(description=(
    "Repeatable filter `column<op>value` on the catalogue's own columns, op one of =, !=, <, <=, >, >=; "
    "e.g. `where=price<=300&where=in_stock=yes`. Numbers compare as numbers; an empty cell never matches. "
    "GET /api/v1/catalog lists the columns."))]
PhotoHandle = Annotated[str | None, Query(description=(
    "The `photo` handle of an earlier search's answer: search that photo again, steered by the other parameters, "
    "with no upload (send no body). 410 `photo_expired` when this gateway no longer holds it: upload the photo."))]
MinScore = Annotated[float | None, Query(ge=0, le=1, description=(
    "Leave out results scoring below this (0 to 1); default GATEWAY_MIN_SCORE, off while the weights are random."))]


def create_app(settings: GatewaySettings | None = None, transport: httpx.AsyncBaseTransport | None = None) -> FastAPI:
    """The gateway; `transport` stands in for the network to both services (tests use `httpx.MockTransport`)."""
    settings = settings or GatewaySettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.pipeline = SearchPipeline(settings, transport, photo_metrics)
        store = await anyio.to_thread.run_sync(open_feedback_store, settings)
        app.state.feedback = Feedback(store, app.state.pipeline.similarity, settings.learnt_weight,
                                      settings.learnt_full_at)
        pruning = asyncio.create_task(prune_feedback(app.state.feedback, settings.feedback_prune_every_s))
        yield
        pruning.cancel()
        with suppress(asyncio.CancelledError):
            await pruning
        store.dispose()
        await app.state.pipeline.aclose()

    async def readiness(pipeline: Pipeline) -> GatewayReadiness:
        return await pipeline.readiness()

    app = create_service(
        "Lookalike", lifespan=lifespan, readiness=readiness, readiness_model=GatewayReadiness,
        readiness_doc="Ready when both services are ready and serve the same model's index.",
        description="Photo in, similar products out.")
    install_upload_guard(app, settings.upload_limits, metrics_of(app))
    photo_metrics = PhotoHandleMetrics(metrics_of(app))
    if settings.cors_allow_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_allow_origins,
                           allow_methods=["GET", "POST", "DELETE"],
                           allow_headers=["X-Request-ID", "X-Session-ID", "Content-Type"], expose_headers=["X-Request-ID"])
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    admin_token = settings.admin_token.get_secret_value() if settings.admin_token else None

    @app.get("/", include_in_schema=False)
    async def page(request: Request) -> FileResponse:
        """The page; a first visit gets a random session cookie, the only thing votes are tied to."""
        response = FileResponse(STATIC / "index.html")
        if not has_session(request):
            response.set_cookie(SESSION_COOKIE, new_session_id(), max_age=int(settings.feedback_retention_days * 86400),
                                httponly=True, samesite="lax", secure=settings.session_cookie_secure)
        return response

    @app.post("/api/v1/search", response_model=SearchResult, responses=ERRORS, openapi_extra=SEARCH_BODY)
    async def search(
        request: Request,
        pipeline: Pipeline,
        where: Where = None,
        min_score: MinScore = None,
        k: int = Query(10, ge=1, le=MAX_K, description="How many products to return (one per variant group)."),
        category: str | None = Query(None, description="Search this category instead of the classifier's decision."),
        like: Liked = None,
        unlike: Unliked = None,
        box: str | None = Query(None, description=(
            "`x0,y0,x1,y1`: search only this region of the photo, as fractions 0 to 1 of the upright photo's "
            "width and height (after EXIF rotation), e.g. `0.5,0,1,0.5` for the top right quarter.")),
        q: str | None = Query(None, description="Words: rank only the products matching them, by the photo's "
                                                "similarity. Left empty, the photo's plain neighbours."),
        photo: PhotoHandle = None,
    ) -> SearchResult:
        """Upload a photo as the multipart field `image`, or name one searched lately by `photo=<handle>` and send
        no body; get its category and the most similar products."""
        region = Box.parse(box) if box else None  # refused before the upload is read
        if where and photo is None:
            await pipeline.check_filters(where)  # refused before the upload is read, and before classifying it
        if photo is not None:  # no upload to spare: the similarity service checks `where` inside the search
            refuse_body_with_handle(request)
            return await pipeline.search_photo(photo, k, category or None, box=region, where=where, min_score=min_score,
                                               like=like, unlike=unlike, q=q if q and q.strip() else None)
        image = await read_multipart_field(request, "image", settings.max_upload_bytes)
        return await pipeline.search_image(image, k, category or None, box=region, where=where, min_score=min_score,
                                           like=like, unlike=unlike, q=q if q and q.strip() else None)

    @app.get("/api/v1/search/text", response_model=TextSearchResult, responses=error_responses(422, 503))
    async def search_text(
        pipeline: Pipeline,
        votes: Votes,
        q: str = Query("", description="Words, e.g. `green velvet sofa`; at most 200 characters. Typed FTS5 syntax "
                                       "is plain words."),
        k: int = Query(10, ge=1, le=MAX_K, description="How many products to return."),
        category: str | None = Query(None, description="Search only this category."),
        where: Where = None,
        like: Liked = None,
        unlike: Unliked = None,
    ) -> TextSearchResult:
        """Products by words: names, categories, the catalogue's text columns and ImageNet tags, with synonyms.

        What shoppers' votes taught these words is blended into the bm25 ranking (`learned: true`).
        With `like` or `unlike` the search is refined instead: the mean vector of the words' top
        products moves toward the liked and away from the unliked, and ranks (`refined: true`).
        """
        found = await pipeline.search_text(q, k, category or None, where, like=like, unlike=unlike)
        if found.refined:
            return found  # ranked by the shopper's own marks, not by words the votes could re-weigh
        try:
            learnt = await votes.rerank(q, found.results, k)
        except FeedbackUnavailable:
            return found  # the votes are a refinement: without their database the words still search
        return found.model_copy(update={"results": learnt})

    @app.get("/api/v1/items/{item_id}/similar", response_model=SimilarItems, responses=ERRORS)
    async def similar(item_id: str, pipeline: Pipeline, where: Where = None, min_score: MinScore = None,
                      k: int = Query(10, ge=1, le=MAX_K)) -> SimilarItems:
        """More like this product, by all its photos, without an upload; its own variant group is left out."""
        return await pipeline.similar_to_item(item_id, k, where=where, min_score=min_score)

    @app.get("/api/v1/items/{item_id}/image", responses={**ERRORS, 200: {"content": {"image/jpeg": {}}}})
    async def item_image(item_id: str, pipeline: Pipeline,
                         photo: int = Query(0, ge=0, le=10_000, description="Which of its photos, from 0.")) -> Response:
        """A product's picture, by id (its first photo unless `photo` says otherwise)."""
        upstream = await pipeline.thumbnail(item_id, photo)
        return Response(upstream.content, media_type="image/jpeg",
                        headers={"Cache-Control": upstream.headers.get("cache-control", "no-cache")})

    @app.get("/api/v1/catalog", response_model=CatalogInfo)
    async def catalog(pipeline: Pipeline) -> CatalogInfo:
        """The categories, their sizes, the weights in use (the page shows a banner for `random`), and the
        columns `where` can filter on."""
        return await pipeline.catalog()

    @app.post("/api/v1/feedback", status_code=201, response_model=FeedbackStored, responses=FEEDBACK_ERRORS)
    async def feedback(vote: FeedbackVote, request: Request, votes: Votes) -> FeedbackStored:
        """Like or unlike a result, for later searches with the same words. Needs `X-Session-ID` or the page's cookie."""
        return await votes.vote(session_of(request) or "", vote)

    @app.delete("/api/v1/feedback", response_model=FeedbackForgotten, responses=FEEDBACK_ERRORS)
    async def forget(request: Request, votes: Votes, session: str | None = Query(
            None, max_length=128, description="The session to forget; another than the caller's needs the admin token.")
    ) -> FeedbackForgotten:
        """Forget every vote of a session: the caller's own, or (with the admin token) anyone's."""
        own = session_of(request, required=session is None)
        if session is not None and session != own:
            require_admin(request, admin_token)
        return FeedbackForgotten(forgotten=await votes.forget(session or own or ""))

    @app.get("/api/v1/feedback/stats", response_model=FeedbackStats, responses=FEEDBACK_ERRORS)
    async def feedback_stats(request: Request, votes: Votes) -> FeedbackStats:
        """For operators (admin token): how many votes and sessions are kept, and since when."""
        require_admin(request, admin_token)
        return await votes.stats()

    @app.get("/api/v1/feedback/learnt", response_model=LearntForQuery, responses=FEEDBACK_ERRORS)
    async def learnt(request: Request, votes: Votes, q: str = Query(..., min_length=1, max_length=200)) -> LearntForQuery:
        """For operators (admin token): what shoppers' votes taught these words, as text searches will blend it."""
        require_admin(request, admin_token)
        return await votes.learnt_for(q)

    return app
