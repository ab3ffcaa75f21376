"""One internal service, maybe several replicas, behind an httpx client.

Its user-caused errors (a broken image, an unknown category) pass through unchanged; its
absence, slowness or failure becomes a 503 that says which service and what to do. What a
service says about its own failure (a Milvus URI, a gRPC error, an address) is internal: the
gateway keeps the stable code, answers a message of its own, and logs the service's words
under the request id (every log line carries it). A service
may run as several replicas (`--scale classifier=3`, or comma-separated URLs): requests take
them in turn, and one that is unreachable or busy passes the request to the next.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from lookalike.contracts import Readiness
from lookalike.errors import ApiError, ErrorEnvelope, ServiceUnavailable
from lookalike.observability import request_id_header
from lookalike.replicas import ReplicaSet, split_urls

Model = TypeVar("Model", bound=BaseModel)
ReadinessModel = TypeVar("ReadinessModel", bound=Readiness)

log = logging.getLogger("lookalike.gateway.upstream")

# What a shopper reads for a service's own 503, by its stable code; `{name}` is the service.
# Never the service's message: that names addresses, the vector store's URI, raw gRPC errors.
_UNAVAILABLE_MESSAGES = {
    "not_ready": "The {name} service is starting up or has no catalogue loaded yet. Please try again shortly.",
    "overloaded": "The {name} service is busy. Please try again in a moment.",
    "busy": "The {name} service is busy. Please try again in a moment.",
    "too_many_connections": "The {name} service is busy. Please try again in a moment.",
    "vector_store_unavailable": "Search is unavailable right now: the {name} service cannot reach its vector store. "
                                "Please try again shortly.",
}
_UNAVAILABLE = "The {name} service is unavailable right now. Please try again shortly."
_LOGGED_BODY_CHARS = 2000


async def _pass_request_id(request: httpx.Request) -> None:
    """Every internal call carries the id of the public request it serves."""
    request.headers.update(request_id_header())


class Upstream:
    """One internal service, maybe several replicas, behind an httpx client; failures become `ApiError`s."""

    def __init__(self, name: str, base_urls: str, timeout_s: float, refresh_s: float = 5.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        """`transport` replaces the network, e.g. with `httpx.MockTransport` in tests."""
        self.name = name
        self.replicas = ReplicaSet(split_urls(base_urls), refresh_s)
        # Connections are pooled per replica address, so keep-alive does not pin traffic to one replica.
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s, connect=2.0),
            # Pooled connections expire well before the services' HTTP_KEEP_ALIVE_S (5 s), so that one is
            # never reused just as the far end closes it (the likely cause of a search failing under a flood).
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=32, keepalive_expiry=2.0),
            event_hooks={"request": [_pass_request_id]}, transport=transport)

    async def aclose(self) -> None:
        await self.client.aclose()

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send to the replica whose turn it is; one that is unreachable or busy (503) passes it to the next.

        Only requests that the replica did not process are sent again, so nothing runs twice.
        """
        response = None
        for replica in await self.replicas.in_turn():
            try:
                response = await self.client.request(method, replica + path, **kwargs)
            except (httpx.ConnectError, httpx.ConnectTimeout):
                self.replicas.refresh_soon()
                continue
            except httpx.TimeoutException as exc:
                log.warning("the %s service did not answer in time: %s %s: %r", self.name, method, path, exc)
                raise ServiceUnavailable(
                    f"The {self.name} service did not answer in time. Please try again in a moment.",
                    headers={"Retry-After": "2"}) from None
            except httpx.TransportError as exc:
                log.warning("the %s service failed to answer: %s %s: %r", self.name, method, path, exc)
                raise ServiceUnavailable(
                    f"The {self.name} service is unavailable right now. Please try again shortly.",
                    headers={"Retry-After": "5"}) from None
            if response.status_code != 503:
                break
        if response is None:
            log.warning("no %s replica could be reached for %s %s", self.name, method, path)
            raise ServiceUnavailable(
                f"The {self.name} service is unavailable right now. Please try again shortly.",
                headers={"Retry-After": "5"})
        if response.status_code < 400:
            return response
        raise self._error_from(response)

    def _error_from(self, response: httpx.Response) -> ApiError:
        """A user-caused error as the service said it; anything from 500 up with the service's words logged only."""
        try:
            error = ErrorEnvelope.model_validate_json(response.content).error
        except ValidationError:
            error = None
        retry = {k: v for k, v in response.headers.items() if k.lower() == "retry-after"}
        if error is not None and response.status_code < 500:
            return ApiError(error.message, code=error.code, status=response.status_code, headers=retry)
        log.warning("the %s service answered %d: %s", self.name, response.status_code,
                    response.text[:_LOGGED_BODY_CHARS], extra={"upstream": self.name})
        if error is not None and response.status_code == 503:
            message = _UNAVAILABLE_MESSAGES.get(error.code, _UNAVAILABLE).format(name=self.name)
            return ServiceUnavailable(message, code=error.code, headers=retry or {"Retry-After": "5"})
        return ServiceUnavailable(f"The {self.name} service failed. Please try again shortly.",
                                  headers=retry or {"Retry-After": "5"})

    async def model(self, method: str, path: str, model: type[Model], **kwargs: Any) -> Model:
        """The answer as `model`; one that does not parse is the service's failure (logged), not the shopper's."""
        response = await self.request(method, path, **kwargs)
        try:
            return model.model_validate_json(response.content)
        except ValidationError as exc:
            log.warning("the %s service answered %s %s with no valid %s: %s", self.name, method, path,
                        model.__name__, exc, extra={"upstream": self.name})
            raise ServiceUnavailable(f"The {self.name} service gave an answer the gateway cannot read. "
                                     "Please try again shortly.", headers={"Retry-After": "5"}) from None

    async def _readiness_of(self, replica: str, model: type[ReadinessModel]) -> ReadinessModel | None:
        try:
            response = await self.client.get(replica + "/readyz")
            return model.model_validate_json(response.content)
        except (httpx.HTTPError, ValidationError):
            return None

    async def readiness(self, model: type[ReadinessModel]) -> ReadinessModel | None:
        """A ready replica's readiness if there is one (requests go past the others), else why not."""
        answers = await asyncio.gather(*(self._readiness_of(r, model) for r in await self.replicas.endpoints()))
        known = [answer for answer in answers if answer is not None]
        ready = [answer for answer in known if answer.ready]
        return (ready or known)[0] if known else None
