"""The search API: by photo, by words, by product; catalogue images and what the catalogue holds."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from gateway.fair_shares import limited
from gateway.photo_handles import refuse_body_with_handle
from gateway.routes.dependencies import Pipeline, Receipt, Settings, Votes
from gateway.schemas import CatalogInfo, SearchResult, SimilarItems, TextSearchResult
from lookalike.contracts import MAX_EXAMPLES, MAX_K, Box
from lookalike.errors import FeedbackUnavailable
from lookalike.service import error_responses
from lookalike.text_query import MAX_QUERY_CHARS
from lookalike.uploads import read_multipart_field

ERRORS = error_responses(400, 404, 408, 413, 415, 422, 503)
SEARCH_ERRORS = error_responses(400, 404, 408, 410, 413, 415, 422, 429, 503)
SIMILAR_ERRORS = error_responses(400, 404, 408, 413, 415, 422, 429, 503)
FAIR_SHARE = [limited("searches")]  # before the upload is read: a refused client costs no body
SEARCH_BODY = {"requestBody": {"required": False, "content": {"multipart/form-data": {"schema": {
    "type": "object",
    "properties": {"image": {"type": "string", "format": "binary", "minLength": 1, "description": (
        "The photo; no body when `photo` names one searched lately.")}}}}}}}
Liked = Annotated[list[str] | None, Query(max_length=MAX_EXAMPLES, description=(
    "Refine: a product id the shopper liked (repeatable, at most 20); the search moves toward it."))]
Unliked = Annotated[list[str] | None, Query(max_length=MAX_EXAMPLES, description=(
    "Refine: a product id marked 'not like this' (repeatable, at most 20); the search moves away from it "
    "and leaves it out."))]
Where = Annotated[list[str] | None, Query(description=(
    "Repeatable filter `column<op>value` on the catalogue's own columns, op one of =, !=, <, <=, >, >=; "
    "e.g. `where=price<=300&where=in_stock=yes`. Numbers compare as numbers; an empty cell never matches. "
    "GET /api/v1/catalog lists the columns."))]
PhotoHandle = Annotated[str | None, Query(description=(
    "The `photo` handle of an earlier search's answer: search that photo again, steered by the other parameters, "
    "with no upload (send no body). 410 `photo_expired` when this gateway no longer holds it: upload the photo."))]
MinScore = Annotated[float | None, Query(ge=0, le=1, description=(
    "Leave out results scoring below this (0 to 1); default GATEWAY_MIN_SCORE, off while the weights are random."))]

router = APIRouter()


@router.post("/api/v1/search", response_model=SearchResult, responses=SEARCH_ERRORS, openapi_extra=SEARCH_BODY,
             dependencies=FAIR_SHARE)
async def search(
    request: Request,
    pipeline: Pipeline,
    settings: Settings,
    receipt: Receipt,
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
    words = q if q and q.strip() else None
    if where and not photo:
        await pipeline.check_filters(where)  # refused before the upload is read, and before classifying it
    if photo:  # no upload to spare: the similarity service checks `where` inside the search
        refuse_body_with_handle(request)
        steered = await pipeline.search_photo(photo, k, category or None, box=region, where=where,
                                              min_score=min_score, like=like, unlike=unlike, q=words)
        return receipt.stamp(steered, "steered", where)
    image = await read_multipart_field(request, "image", settings.max_upload_bytes)
    found = await pipeline.search_image(image, k, category or None, box=region, where=where, min_score=min_score,
                                        like=like, unlike=unlike, q=words)
    return receipt.stamp(found, "photo_words" if words else "photo", where)


@router.get("/api/v1/search/text", response_model=TextSearchResult, responses=error_responses(422, 429, 503),
            dependencies=FAIR_SHARE)
async def search_text(
    pipeline: Pipeline,
    votes: Votes,
    receipt: Receipt,
    q: str = Query("", description=f"Words, e.g. `green velvet sofa`; at most {MAX_QUERY_CHARS} characters. "
                                   "Typed FTS5 syntax is plain words."),
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
        return receipt.stamp(found, "words", where)  # ranked by the shopper's own marks, not by words votes could re-weigh
    try:
        learned = await votes.rerank(q, found.results, k)
    except FeedbackUnavailable:
        return receipt.stamp(found, "words", where)  # the votes are a refinement: without their database the words search
    return receipt.stamp(found.model_copy(update={"results": learned}), "words", where)


@router.get("/api/v1/items/{item_id}/similar", response_model=SimilarItems, responses=SIMILAR_ERRORS,
            dependencies=FAIR_SHARE)
async def similar(item_id: str, pipeline: Pipeline, receipt: Receipt, where: Where = None, min_score: MinScore = None,
                  k: int = Query(10, ge=1, le=MAX_K)) -> SimilarItems:
    """More like this product, by all its photos, without an upload; its own variant group is left out."""
    return receipt.stamp(await pipeline.similar_to_item(item_id, k, where=where, min_score=min_score), "similar", where)


@router.get("/api/v1/items/{item_id}/image", responses={**ERRORS, 200: {"content": {"image/jpeg": {}}}})
async def item_image(item_id: str, pipeline: Pipeline,
                     photo: int = Query(0, ge=0, le=10_000, description="Which of its photos, from 0.")) -> Response:
    """A product's picture, by id (its first photo unless `photo` says otherwise)."""
    upstream = await pipeline.thumbnail(item_id, photo)
    return Response(upstream.content, media_type="image/jpeg",
                    headers={"Cache-Control": upstream.headers.get("cache-control", "no-cache")})


@router.get("/api/v1/catalog", response_model=CatalogInfo)
async def catalog(pipeline: Pipeline) -> CatalogInfo:
    """The categories, their sizes, the weights in use (the page shows a banner for `random`), and the
    columns `where` can filter on."""
    return await pipeline.catalog()
