"""The gateway's job: send an upload to the classifier, then its embedding to the similarity service.

The two services are reached over HTTP with timeouts. Their user-caused errors (a broken
image, an unknown category) pass through unchanged; their absence, slowness or failure
becomes a 503 that says which service and what to do. A service may run as several replicas
(`--scale classifier=3`, or comma-separated URLs): requests take them in turn.
"""

from __future__ import annotations

import asyncio
import time
from typing import Literal, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from gateway.schemas import CatalogInfo, GatewayReadiness, Result, SearchResult, SimilarItems
from gateway.settings import GatewaySettings
from lookalike.contracts import (ClassifierReadiness, ClassifyResponse, Hit, SearchRequest, SearchResponse,
                                 SimilarityReadiness)
from lookalike.errors import ApiError, ErrorEnvelope, ServiceUnavailable, Unprocessable
from lookalike.hedging import categories_to_search, merge_by_score
from lookalike.replicas import ReplicaSet, split_urls
from lookalike.observability import request_id_header


Model = TypeVar("Model", bound=BaseModel)
Readiness = TypeVar("Readiness", ClassifierReadiness, SimilarityReadiness)


class UpstreamUnavailable(ServiceUnavailable):
    code = "service_unavailable"


class UnknownCategory(Unprocessable):
    code = "unknown_category"


def image_url(item_id: str) -> str:
    return f"/api/v1/items/{quote(item_id, safe='')}/image"


def _results(hits: list[Hit]) -> list[Result]:
    return [Result(id=h.id, name=h.name, category=h.category, score=h.score, image_url=image_url(h.id), extra=h.extra)
            for h in hits]


async def _pass_request_id(request: httpx.Request) -> None:
    """Every internal call carries the id of the public request it serves."""
    request.headers.update(request_id_header())


class Upstream:
    """One internal service, maybe several replicas, behind an httpx client; failures become `ApiError`s."""

    def __init__(self, name: str, base_urls: str, timeout_s: float, refresh_s: float = 5.0) -> None:
        self.name = name
        self.replicas = ReplicaSet(split_urls(base_urls), refresh_s)
        # Connections are pooled per replica address, so keep-alive does not pin traffic to one replica.
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s, connect=2.0),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
            event_hooks={"request": [_pass_request_id]})

    async def aclose(self) -> None:
        await self.client.aclose()

    async def request(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        """Send to the replica whose turn it is; one that is unreachable or busy (503) passes it to the next.

        Only requests that the replica did not process are sent again, so nothing runs twice.
        """
        response = None
        for replica in await self.replicas.in_turn():
            try:
                response = await self.client.request(method, replica + path, **kwargs)  # type: ignore[arg-type]
            except (httpx.ConnectError, httpx.ConnectTimeout):
                self.replicas.refresh_soon()
                continue
            except httpx.TimeoutException:
                raise UpstreamUnavailable(
                    f"The {self.name} service did not answer in time. Please try again in a moment.",
                    headers={"Retry-After": "2"}) from None
            except httpx.TransportError:
                raise UpstreamUnavailable(
                    f"The {self.name} service is unavailable right now. Please try again shortly.",
                    headers={"Retry-After": "5"}) from None
            if response.status_code != 503:
                break
        if response is None:
            raise UpstreamUnavailable(
                f"The {self.name} service is unavailable right now. Please try again shortly.",
                headers={"Retry-After": "5"})
        if response.status_code < 400:
            return response
        raise self._error_from(response)

    def _error_from(self, response: httpx.Response) -> ApiError:
        try:
            error = ErrorEnvelope.model_validate_json(response.content).error
        except ValidationError:
            error = None
        retry = {k: v for k, v in response.headers.items() if k.lower() == "retry-after"}
        if error is not None and (response.status_code < 500 or response.status_code == 503):
            return ApiError(error.message, code=error.code, status=response.status_code, headers=retry)
        return UpstreamUnavailable(f"The {self.name} service failed. Please try again shortly.", headers=retry)

    async def model(self, method: str, path: str, model: type[Model], **kwargs: object) -> Model:
        return model.model_validate_json((await self.request(method, path, **kwargs)).content)

    async def _readiness_of(self, replica: str, model: type[Readiness]) -> Readiness | None:
        try:
            response = await self.client.get(replica + "/readyz")
            return model.model_validate_json(response.content)
        except (httpx.HTTPError, ValidationError):
            return None

    async def readiness(self, model: type[Readiness]) -> Readiness | None:
        """A ready replica's readiness if there is one (requests go past the others), else why not."""
        answers = await asyncio.gather(*(self._readiness_of(r, model) for r in await self.replicas.endpoints()))
        known = [answer for answer in answers if answer is not None]
        ready = [answer for answer in known if answer.ready]
        return (ready or known or [None])[0]


class SearchPipeline:
    def __init__(self, settings: GatewaySettings) -> None:
        self.classifier = Upstream("classifier", settings.classifier_url, settings.classify_timeout_s,
                                   settings.replica_refresh_s)
        self.similarity = Upstream("similarity", settings.similarity_url, settings.search_timeout_s,
                                   settings.replica_refresh_s)
        self.max_upload_bytes = settings.max_upload_bytes
        self.hedge_below = settings.hedge_below

    async def aclose(self) -> None:
        await asyncio.gather(self.classifier.aclose(), self.similarity.aclose())

    async def search_image(self, image: bytes, k: int, category: str | None) -> SearchResult:
        """Classify once, then search the decided (or the requested) category with the same embedding.

        An unsure decision (top probability below `hedge_below`) also searches the runner-up, and
        the two result lists merge by score; a requested category is searched alone.
        """
        started = time.perf_counter()
        classified = await self.classifier.model(
            "POST", "/v1/classify", ClassifyResponse, content=image,
            headers={"content-type": "application/octet-stream"})
        classify_done = time.perf_counter()
        chosen = category or classified.category
        if chosen not in classified.probabilities:
            raise UnknownCategory(
                f"Unknown category {chosen!r}. The catalogue has: {', '.join(sorted(classified.probabilities))}.")
        searched = [chosen] if category else categories_to_search(chosen, classified.probabilities, self.hedge_below)
        found = await asyncio.gather(*(self.similarity.model(
            "POST", "/v1/search", SearchResponse,
            json=SearchRequest(embedding=classified.embedding, category=c, k=k).model_dump()) for c in searched))
        done = time.perf_counter()
        return SearchResult(
            category=chosen,
            confidence=classified.probabilities[chosen],
            probabilities=classified.probabilities,
            searched=searched,
            results=_results(merge_by_score((f.hits for f in found), k)),
            weights=classified.model.weights,
            index_version=found[0].index_version,
            timings_ms={"classify": (classify_done - started) * 1000, "search": (done - classify_done) * 1000,
                        "total": (done - started) * 1000},
        )

    async def similar_to_item(self, item_id: str, k: int) -> SimilarItems:
        found = await self.similarity.model(
            "GET", f"/v1/items/{quote(item_id, safe='')}/similar", SearchResponse, params={"k": k})
        return SimilarItems(item_id=item_id, category=found.category, results=_results(found.hits),
                            index_version=found.index_version)

    async def thumbnail(self, item_id: str) -> httpx.Response:
        return await self.similarity.request("GET", f"/v1/items/{quote(item_id, safe='')}/image")

    async def readiness(self) -> GatewayReadiness:
        classifier, similarity = await asyncio.gather(
            self.classifier.readiness(ClassifierReadiness), self.similarity.readiness(SimilarityReadiness))
        reason = None
        if classifier is None or similarity is None:
            reason = f"the {'classifier' if classifier is None else 'similarity'} service is unreachable"
        elif not classifier.ready or not similarity.ready:
            reason = classifier.reason if not classifier.ready else similarity.reason
        elif classifier.model and classifier.model.model_id != similarity.model_id:
            reason = "the classifier and the similarity service serve indexes of different models"
        return GatewayReadiness(ready=reason is None, reason=reason,
                                weights=classifier.model.weights if classifier and classifier.model else None,
                                classifier=classifier, similarity=similarity)

    async def catalog(self) -> CatalogInfo:
        """What the page needs on load: the categories, the weights, and whether there is anything to search."""
        ready = await self.readiness()
        similarity = ready.similarity
        categories = similarity.categories if similarity else {}
        # A reachable similarity service with no index (or an index without items) means the store has
        # not built its catalogue yet: that calls for instructions, not "try again later".
        empty = similarity is not None and (similarity.index_version is None or not any(categories.values()))
        state: Literal["ready", "empty", "unavailable"] = "empty" if empty else "ready" if ready.ready else "unavailable"
        return CatalogInfo(categories=categories, weights=ready.weights,
                           index_version=similarity.index_version if similarity else None,
                           state=state, reason=ready.reason, max_upload_bytes=self.max_upload_bytes)
