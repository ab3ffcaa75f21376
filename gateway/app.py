"""The public routes: the web page, the search API, catalogue images, health."""

from __future__ import annotations

from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator

from fastapi import FastAPI, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.middleware.cors import CORSMiddleware

from gateway.pipeline import SearchPipeline
from gateway.schemas import CatalogInfo, GatewayReadiness, SearchResult, SimilarItems
from gateway.settings import GatewaySettings
from lookalike.contracts import MAX_K
from lookalike.errors import ErrorEnvelope, install_error_handlers
from lookalike.observability import install_observability
from lookalike.uploads import read_multipart_field

STATIC = Path(__file__).parent / "static"
ERRORS = {status: {"model": ErrorEnvelope} for status in (400, 404, 413, 415, 422, 503)}
SEARCH_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["image"],
    "properties": {"image": {"type": "string", "format": "binary", "description": "The photo."}}}}}}}


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or GatewaySettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.pipeline = SearchPipeline(settings)
        yield
        await app.state.pipeline.aclose()

    app = FastAPI(title="Lookalike", version="1", lifespan=lifespan,
                  description="Photo in, similar products out.")
    install_error_handlers(app)
    install_observability(app)
    if settings.cors_allow_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_allow_origins, allow_methods=["GET", "POST"],
                           allow_headers=["X-Request-ID"], expose_headers=["X-Request-ID"])
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    def pipeline(request: Request) -> SearchPipeline:
        return request.app.state.pipeline

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.post("/api/v1/search", response_model=SearchResult, responses=ERRORS, openapi_extra=SEARCH_BODY)
    async def search(
        request: Request,
        k: int = Query(10, ge=1, le=MAX_K, description="How many similar items to return."),
        category: str | None = Query(None, description="Search this category instead of the classifier's decision."),
    ) -> SearchResult:
        """Upload a photo as the multipart field `image`; get its category and the most similar items."""
        image = await read_multipart_field(request, "image", settings.max_upload_bytes)
        return await pipeline(request).search_image(image, k, category or None)

    @app.get("/api/v1/items/{item_id}/similar", response_model=SimilarItems, responses=ERRORS)
    async def similar(item_id: str, request: Request, k: int = Query(10, ge=1, le=MAX_K)) -> SimilarItems:
        """More like this catalogue item, without an upload."""
        return await pipeline(request).similar_to_item(item_id, k)

    @app.get("/api/v1/items/{item_id}/image", responses={**ERRORS, 200: {"content": {"image/jpeg": {}}}})
    async def item_image(item_id: str, request: Request) -> Response:
        """A catalogue item's picture, by id."""
        upstream = await pipeline(request).thumbnail(item_id)
        return Response(upstream.content, media_type="image/jpeg",
                        headers={"Cache-Control": upstream.headers.get("cache-control", "no-cache")})

    @app.get("/api/v1/catalog", response_model=CatalogInfo)
    async def catalog(request: Request) -> CatalogInfo:
        """The categories, their sizes, and the weights in use (the page shows a banner for `random`)."""
        return await pipeline(request).catalog()

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """The process is alive."""
        return {"status": "ok"}

    @app.get("/readyz", response_model=GatewayReadiness, responses={503: {"model": GatewayReadiness}})
    async def readyz(request: Request) -> JSONResponse:
        """Ready when both services are ready and serve the same model's index."""
        body = await pipeline(request).readiness()
        return JSONResponse(body.model_dump(), status_code=200 if body.ready else 503)

    return app
