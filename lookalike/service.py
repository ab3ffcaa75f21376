"""The skeleton every service is built on: errors, observability, health, readiness and reload.

`create_service` gives each service the same outside: every error answers with `ErrorEnvelope`,
every request gets an id, a log line and metrics, `/healthz` says the process is alive, `/readyz`
answers 200 or 503 from the service's readiness model, and `POST /v1/reload` (where a service
serves an index, and only with `Authorization: Bearer $LOOKALIKE_INTERNAL_TOKEN`) switches to the
index's current version. A service's `app.py` builds its state
in the lifespan and includes its own routers (module-level `APIRouter`s), whose routes read that
state from `app.state` through `from_state` dependencies.
"""


import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from http import HTTPStatus
from typing import Annotated, Any, Protocol, TypeVar, cast

import anyio
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from pydantic import SecretStr
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from lookalike.contracts import Readiness, ReloadResponse
from lookalike.errors import ApiError, ErrorDetail, ErrorEnvelope, InternalTokenRequired
from lookalike.observability import (
    CONNECTIONS_REFUSED,
    REQUEST_ID_HEADER,
    Metrics,
    MetricsGuard,
    install_observability,
    request_id_of,
)

log = logging.getLogger("lookalike.errors")

State = TypeVar("State")
Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


class Reloadable(Protocol):
    def reload(self) -> tuple[str, str | None]:
        """Switch to the index's current version: (new version, previous version)."""
        ...


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries saying that these statuses answer with `ErrorEnvelope`."""
    return {status: {"model": ErrorEnvelope} for status in statuses}


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    body = ErrorEnvelope(error=ErrorDetail(code=code, message=message))
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path"))
        parts.append(f"{where}: {err.get('msg', 'invalid')}" if where else str(err.get("msg", "invalid")))
    return "Invalid request. " + "; ".join(parts)


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at the request's path; Starlette's 405 names only the first route's."""
    methods: set[str] = set()
    for route in iter_route_contexts(request.app.routes):  # included routers' routes too, with their prefixes
        if route.path is not None and route.methods and compile_path(route.path)[0].match(request.scope["path"]):
            methods |= route.methods
    return sorted(methods)


def install_error_handlers(app: FastAPI) -> None:
    """Make every error, including FastAPI's own, answer with `ErrorEnvelope`."""

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, "invalid_request", _validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and isinstance(exc.__cause__, ValueError | RecursionError):
            # FastAPI's answer to a JSON body that json.loads cannot even start on (not UTF-8, or
            # nested past the recursion limit): as bad a body as malformed JSON, which is a 422.
            return error_response(422, "invalid_request", "Invalid request. The body is not JSON: "
                                  "send it as UTF-8 JSON text.")
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405 and (allowed := allowed_methods(request)):
            headers = {**(headers or {}), "Allow": ", ".join(allowed)}
        phrase = HTTPStatus(exc.status_code).phrase
        code = phrase.lower().replace(" ", "_").replace("-", "_")
        message = exc.detail if isinstance(exc.detail, str) and exc.detail != phrase else f"{phrase}."
        return error_response(exc.status_code, code, message, headers)

    # Starlette calls a handler registered for Exception only for what nothing else handled,
    # then re-raises it for the server to log: this is the 500's body, not a catch-all.
    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        request_id = request_id_of(request)
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc,
                  extra={"request_id": request_id})
        return error_response(500, "internal_error", "Something went wrong on our side. Please try again.",
                              {REQUEST_ID_HEADER: request_id} if request_id else None)


def require_internal_token(request: Request, token: SecretStr | None) -> None:
    """Bearer auth for internal write routes, compared in constant time; all refused while no token is set."""
    challenge = {"WWW-Authenticate": 'Bearer realm="lookalike-internal"'}
    if token is None or not token.get_secret_value():
        raise InternalTokenRequired(
            "Internal calls are off until this service has a token: set LOOKALIKE_INTERNAL_TOKEN to a long random "
            "string for the services and the indexing job alike (`make run` makes one per run), and restart it.",
            headers=challenge)
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.get_secret_value().encode()):
        raise InternalTokenRequired(
            "This needs the internal token: send `Authorization: Bearer <token>` with the value of "
            "LOOKALIKE_INTERNAL_TOKEN.", headers=challenge)


def state_getter(name: str, kind: type[State]) -> Callable[[Request], Awaitable[State]]:
    """The dependency function that hands a route what the lifespan put on `app.state` under `name`.

    A coroutine, so FastAPI calls it on the event loop: a plain function would go to the thread pool,
    a hand-off per dependency per request (a third of a steered search's gateway CPU), and `/readyz`
    answers even while every worker thread is busy with a search.
    """

    async def dependency(request: Request) -> State:
        return cast(State, getattr(request.app.state, name))

    dependency.__name__ = f"state_{name}"
    return dependency


def from_state(name: str, kind: type[State]) -> Any:
    """`Annotated[Kind, from_state("name", Kind)]`: a route parameter filled from `app.state.name`."""
    return Depends(state_getter(name, kind))


def metrics_of(app: FastAPI) -> Metrics:
    return cast(Metrics, app.state.metrics)


def create_service(
    title: str,
    *,
    lifespan: Lifespan,
    readiness: Callable[..., Awaitable[Readiness]],
    readiness_model: type[Readiness],
    readiness_doc: str,
    reload: Callable[..., Awaitable[Reloadable]] | None = None,
    internal_token: SecretStr | None = None,
    description: str | None = None,
    metrics_guard: MetricsGuard | None = None,
) -> FastAPI:
    """A FastAPI app with the shared outside; the service adds its own routes to it.

    `readiness` and `reload` are FastAPI dependencies: the first returns the service's readiness
    model, the second what `/v1/reload` reloads (e.g. the `ServedVersion`), for callers that send
    `internal_token` (LOOKALIKE_INTERNAL_TOKEN; None refuses them all). `metrics_guard` runs before
    each `/metrics` scrape (the gateway's asks for the operator token).
    """
    @asynccontextmanager
    async def lifespan_with_state(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        # Lifespan state is what uvicorn hands each connection's protocol (`app_state`): the one
        # way the protocol, which answers some connections before any route, reaches /metrics.
        async with lifespan(app):
            yield {CONNECTIONS_REFUSED: metrics_of(app).connections_refused}

    app = FastAPI(title=title, version="1", lifespan=lifespan_with_state, description=description or "")
    install_error_handlers(app)
    install_observability(app, metrics_guard)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """The process is alive."""
        return {"status": "ok"}

    async def readyz(body: Annotated[Readiness, Depends(readiness)]) -> JSONResponse:
        return JSONResponse(body.model_dump(), status_code=200 if body.ready else 503)

    app.add_api_route("/readyz", readyz, methods=["GET"], response_model=readiness_model,
                      responses={503: {"model": readiness_model}}, summary="Readyz", description=readiness_doc)

    if reload is not None:

        @app.post("/v1/reload", response_model=ReloadResponse, responses=error_responses(401, 404, 409, 422, 503))
        async def reload_index(request: Request, target: Annotated[Reloadable, Depends(reload)]) -> ReloadResponse:
            """Switch to the index's current version; requests in flight finish on the old one.

            Needs `Authorization: Bearer $LOOKALIKE_INTERNAL_TOKEN`. One reload runs at a time; a second
            waits for it (on a worker thread), then finds the version already loaded or loads the newer one.
            """
            require_internal_token(request, internal_token)
            version, previous = await anyio.to_thread.run_sync(target.reload)
            return ReloadResponse(index_version=version, previous_version=previous)

    return app
