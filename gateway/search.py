"""The gateway's job: send an upload to the classifier, then its embedding to the similarity service."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

import httpx
from pydantic import ValidationError

from gateway.photo_handles import PhotoHandleMetrics, PhotoHandles, same_model
from gateway.schemas import CatalogInfo, GatewayReadiness, Result, SearchResult, SimilarItems, TextSearchResult
from gateway.settings import GatewaySettings
from gateway.upstream import Upstream
from gateway.version_skew import agreed_version, catalogue_changing, is_version_skew
from lookalike.contracts import (
    Box,
    CatalogColumns,
    ClassifierReadiness,
    ClassifyResponse,
    Hit,
    ModelInfo,
    SearchRequest,
    SearchResponse,
    SimilarityReadiness,
    TextSearchResponse,
)
from lookalike.errors import ApiError, PhotoExpired, UnknownCategory
from lookalike.hedging import categories_to_search, merge_by_score
from lookalike.text_query import query_words
from lookalike.where import parse_filters

JSON = {"content-type": "application/json"}

log = logging.getLogger("lookalike.gateway")


@dataclass(frozen=True)
class ServicesReadiness:
    """Both services' readiness (None: unreachable), for the catalogue's state; never answered whole."""

    reason: str | None
    classifier: ClassifierReadiness | None
    similarity: SimilarityReadiness | None

    @property
    def weights(self) -> str | None:
        return self.classifier.model.weights if self.classifier and self.classifier.model else None


def image_url(item_id: str, photo: int = 0) -> str:
    return f"/api/v1/items/{quote(item_id, safe='')}/image" + (f"?photo={photo}" if photo else "")


def result_of(hit: Hit) -> Result:
    """The public shape of a similarity service hit: the one place a hit becomes a result."""
    return Result(id=hit.id, name=hit.name, category=hit.category, score=hit.score, image_url=image_url(hit.id, hit.photo),
                  extra=hit.extra, group_id=hit.group_id or hit.id, photos=hit.photos, variants=hit.variants,
                  matched=hit.matched)


def _results(hits: list[Hit]) -> list[Result]:
    return [result_of(hit) for hit in hits]


def merge_groups(hits: list[Hit]) -> list[Hit]:
    """The best hit of each variant group, best first (hedged searches of two categories may share one)."""
    best: dict[str, Hit] = {}
    for hit in hits:
        best.setdefault(hit.group_id or hit.id, hit)
    return list(best.values())


class SearchPipeline:
    """Classify, then search; photos classified lately, by handle; readiness and the catalogue's state."""

    def __init__(self, settings: GatewaySettings, transport: httpx.AsyncBaseTransport | None = None,
                 photo_metrics: PhotoHandleMetrics | None = None) -> None:
        self.classifier = Upstream("classifier", settings.classifier_url, settings.classify_timeout_s,
                                   settings.replica_refresh_s, transport)
        self.similarity = Upstream("similarity", settings.similarity_url, settings.search_timeout_s,
                                   settings.replica_refresh_s, transport)
        self.max_upload_bytes = settings.max_upload_bytes
        self.filter_columns = list(settings.filter_columns)
        self.hedge_below = settings.hedge_below
        self.min_score = settings.min_score
        self.photos = PhotoHandles(settings.photo_handle_max_entries, settings.photo_handle_max_bytes,
                                   settings.photo_handle_ttl_s, settings.photo_handle_max_photo_bytes, photo_metrics)
        self.version_wait_s = settings.version_wait_s
        self.serving_model: ModelInfo | None = None
        """The model of the classifier's latest answer: a photo handle of another model has expired."""

    def cutoff(self, asked: float | None, weights: str | None) -> float:
        """The request's `min_score`, else the configured default, which is off while the weights are `random`."""
        if asked is not None:
            return asked
        return 0.0 if weights in (None, "random") else self.min_score

    async def aclose(self) -> None:
        await asyncio.gather(self.classifier.aclose(), self.similarity.aclose())

    async def classify(self, image: bytes, box: Box | None) -> ClassifyResponse:
        """One forward pass on the photo, or on its `box` region."""
        classified = await self.classifier.model(
            "POST", "/v1/classify", ClassifyResponse, content=image, params={"box": str(box)} if box else None,
            headers={"content-type": "application/octet-stream"})
        self.serving_model = classified.model
        return classified

    def _check_model(self, held: ModelInfo, serving: ModelInfo | None) -> None:
        if serving is not None and not same_model(held, serving):
            raise PhotoExpired("The catalogue now runs another model than the one this photo was searched with. "
                               "Please send the photo again.")

    async def _on_one_version(self, classified: ClassifyResponse, handle: str, photo: bytes | None,
                              box: Box | None, started: float, classify_done: float, k: int, category: str | None,
                              **steering: Any) -> SearchResult:
        """`_search`; when the similarity service holds another index version than the classification's, wait
        until both services agree, classify the photo again on that version and search once more.

        Again until GATEWAY_VERSION_WAIT_S has passed, not only once: behind several classifier replicas
        that reload one after the other, the second classification can reach a replica still on the old
        version. Past the wait, a 503 with Retry-After.
        """
        deadline = time.monotonic() + self.version_wait_s
        while True:
            try:
                return await self._search(classified, handle, started, classify_done, k, category, **steering)
            except ApiError as exc:
                if not is_version_skew(exc):
                    raise
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise catalogue_changing()
            agreed = await agreed_version(self.classifier, self.similarity, remaining)
            self._check_model(classified.model, agreed.model)
            if photo is None:
                raise PhotoExpired("The catalogue was updated since this photo was searched. Please send the photo "
                                   "again.")
            classified = await self.classify(photo, box)
            self.photos.add_region(handle, box, classified)
            classify_done = time.perf_counter()

    async def search_image(self, image: bytes, k: int, category: str | None, *, box: Box | None = None,
                           where: list[str] | None = None, min_score: float | None = None,
                           like: list[str] | None = None, unlike: list[str] | None = None,
                           q: str | None = None) -> SearchResult:
        """Classify once (the `box` region only, if given), then search the decided (or the requested) category.

        An unsure decision (top probability below `hedge_below`) also searches the runner-up, and
        the two result lists merge by score; a requested category is searched alone. `where`
        filters and the words `q` apply inside the search; results below the cutoff are left out.
        `like` and `unlike` refine the search: the similarity service moves the embedding (Rocchio).
        The answer's `photo` handle lets later searches steer without sending the photo again.
        """
        if q is not None:
            query_words(q)  # a 422 now, before the classifier's forward pass, not after
        started = time.perf_counter()
        classified = await self.classify(image, box)
        handle = self.photos.keep(image, box, classified)
        return await self._on_one_version(classified, handle, image, box, started, time.perf_counter(), k, category,
                                          where=where, min_score=min_score, like=like, unlike=unlike, q=q)

    async def search_photo(self, handle: str, k: int, category: str | None, *, box: Box | None = None,
                           where: list[str] | None = None, min_score: float | None = None,
                           like: list[str] | None = None, unlike: list[str] | None = None,
                           q: str | None = None) -> SearchResult:
        """`search_image` for a photo this gateway holds under `handle`: no upload, and no forward pass unless
        the `box` region is new (then one, on the photo kept with the handle).

        BadPhotoHandle for a malformed handle; PhotoExpired for one this gateway doesn't hold, or (for a
        new region) whose photo it didn't keep: the client sends the photo again.
        """
        if q is not None:
            query_words(q)
        started = time.perf_counter()
        entry = self.photos.get(handle)
        self._check_model(entry.model, self.serving_model)
        classified = entry.classification(box)
        classify_done = started  # held: `classify` takes 0 ms
        if classified is None:
            if entry.photo is None:
                raise PhotoExpired("This photo was too large to keep on the server for a new region. "
                                   "Please send the photo again with the region.")
            classified = await self.classify(entry.photo, box)
            self.photos.add_region(handle, box, classified)
            classify_done = time.perf_counter()
        return await self._on_one_version(classified, handle, entry.photo, box, started, classify_done, k, category,
                                          where=where, min_score=min_score, like=like, unlike=unlike, q=q)

    async def _search(self, classified: ClassifyResponse, handle: str, started: float, classify_done: float,
                      k: int, category: str | None, *, where: list[str] | None, min_score: float | None,
                      like: list[str] | None, unlike: list[str] | None, q: str | None) -> SearchResult:
        chosen = category or classified.category
        if chosen not in classified.probabilities:
            raise UnknownCategory(
                f"Unknown category {chosen!r}. The catalogue has: {', '.join(sorted(classified.probabilities))}.")
        searched = [chosen] if category else categories_to_search(chosen, classified.probabilities, self.hedge_below)
        cutoff = self.cutoff(min_score, classified.model.weights)
        # Built without validation: the route checked k, like and unlike, and the similarity service decodes
        # the embedding anyway (decoding it here too cost 0.36 ms a search); serialised once per category.
        request = SearchRequest.model_construct(embedding=classified.embedding, category=chosen, k=k,
                                                where=where or [], min_score=cutoff, like=like or [],
                                                unlike=unlike or [], q=q, exclude_ids=[], exclude_groups=[],
                                                index_version=classified.index_version)
        found = await asyncio.gather(*(self.similarity.model(
            "POST", "/v1/search", SearchResponse, content=request.model_copy(update={"category": c}).model_dump_json(),
            headers=JSON) for c in searched))
        done = time.perf_counter()
        return SearchResult(
            category=chosen,
            confidence=classified.probabilities[chosen],
            probabilities=classified.probabilities,
            searched=searched,
            results=_results(merge_groups(merge_by_score((f.hits for f in found), k * len(searched)))[:k]),
            min_score=cutoff,
            weights=classified.model.weights,
            index_version=found[0].index_version,
            timings_ms={"classify": (classify_done - started) * 1000, "search": (done - classify_done) * 1000,
                        "total": (done - started) * 1000},
            q=q,
            photo=handle,
        )

    async def search_text(self, q: str, k: int, category: str | None, where: list[str] | None = None, *,
                          like: list[str] | None = None, unlike: list[str] | None = None) -> TextSearchResult:
        """Products by words alone: the similarity service's text index, ranked by bm25.

        `like` and `unlike` refine it: the words' top products' mean vector moves (Rocchio) and ranks.
        """
        query_words(q)
        started = time.perf_counter()
        params: dict[str, str | int | list[str]] = {"q": q, "k": k, "where": where or [], "like": like or [],
                                                    "unlike": unlike or []}
        if category is not None:
            params["category"] = category
        found = await self.similarity.model("GET", "/v1/search/text", TextSearchResponse, params=params)
        total = (time.perf_counter() - started) * 1000
        return TextSearchResult(q=q, category=found.category, results=_results(found.hits),
                                index_version=found.index_version, timings_ms={"search": total, "total": total},
                                refined=found.refined)

    async def similar_to_item(self, item_id: str, k: int, *, where: list[str] | None = None,
                              min_score: float | None = None) -> SimilarItems:
        """More like this product, by all its photos, its own variant group left out."""
        if min_score is None and self.min_score:
            similarity = await self.similarity.readiness(SimilarityReadiness)
            min_score = self.cutoff(None, similarity.weights if similarity else None)
        cutoff = min_score or 0.0
        found = await self.similarity.model(
            "GET", f"/v1/items/{quote(item_id, safe='')}/similar", SearchResponse,
            params={"k": k, "where": where or [], "min_score": cutoff})
        return SimilarItems(item_id=item_id, category=found.category, results=_results(found.hits), min_score=cutoff,
                            index_version=found.index_version)

    async def thumbnail(self, item_id: str, photo: int = 0) -> httpx.Response:
        return await self.similarity.request("GET", f"/v1/items/{quote(item_id, safe='')}/image",
                                             params={"photo": photo} if photo else None)

    async def check_filters(self, where: list[str]) -> None:
        """BadFilter or UnknownColumn for a bad `where`, so a photo search refuses it before reading the upload.

        The similarity service checks it again inside the search; while it has no index to describe,
        that check is the only one.
        """
        columns = await self.columns()
        if columns is not None:
            parse_filters(where, [column.name for column in columns.columns])

    async def columns(self) -> CatalogColumns | None:
        """The filterable columns, or None while the similarity service has no index to describe."""
        try:
            return await self.similarity.model("GET", "/v1/columns", CatalogColumns)
        except (ApiError, ValidationError):  # no index yet, or a similarity service from before filters
            return None

    async def services_readiness(self) -> ServicesReadiness:
        """Both services' own readiness, and the public reason the gateway is not ready, if it is not.

        The reason is the gateway's own words: a service's reason may name its vector store's URI,
        a file path or an exception, which stay on its internal `/readyz` and in the log.
        """
        classifier, similarity = await asyncio.gather(
            self.classifier.readiness(ClassifierReadiness), self.similarity.readiness(SimilarityReadiness))
        reason = None
        if classifier is None or similarity is None:
            reason = f"the {'classifier' if classifier is None else 'similarity'} service is unreachable"
        elif not classifier.ready or not similarity.ready:
            name, own = ("classifier", classifier.reason) if not classifier.ready else ("similarity", similarity.reason)
            log.debug("the %s service is not ready: %s", name, own)
            reason = ("no catalogue has been indexed yet" if name == "similarity" and similarity.index_version is None
                      else f"the {name} service is not ready")
        elif classifier.model and classifier.model.model_id != similarity.model_id:
            reason = "the classifier and the similarity service serve indexes of different models"
        return ServicesReadiness(reason, classifier, similarity)

    async def readiness(self) -> GatewayReadiness:
        """The public `/readyz`: ready or not, why in words, and the weights; no service's details."""
        state = await self.services_readiness()
        return GatewayReadiness(ready=state.reason is None, reason=state.reason, weights=state.weights)

    async def catalog(self) -> CatalogInfo:
        """What the page needs on load: the categories, the weights, and whether there is anything to search."""
        ready = await self.services_readiness()
        similarity = ready.similarity
        categories = similarity.categories if similarity else {}
        # A reachable similarity service with no index (or an index without items) means the store has
        # not built its catalogue yet: that calls for instructions, not "try again later".
        empty = similarity is not None and (similarity.index_version is None or not any(categories.values()))
        state: Literal["ready", "empty", "unavailable"] = ("empty" if empty else "ready" if ready.reason is None
                                                           else "unavailable")
        columns = await self.columns() if similarity is not None and similarity.ready else None
        by_name = {column.name: column for column in columns.columns} if columns else {}
        return CatalogInfo(filters=[by_name[name] for name in self.filter_columns if name in by_name],
                           categories=categories, weights=ready.weights,
                           index_version=similarity.index_version if similarity else None,
                           state=state, reason=ready.reason, max_upload_bytes=self.max_upload_bytes,
                           columns=columns.columns if columns else [])
