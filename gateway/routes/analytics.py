"""Analytics: shoppers' events on search results, and the staff's reports (the `/staff` page and its JSON).

Events come from the page and the widget (clicks, as `navigator.sendBeacon`, whose body is
`text/plain` holding JSON) and from a store's own site (add to cart, purchase). Each names the
`query_id` of the search that showed the product; the receipt proves it did, at which position.
The staff endpoints need the admin token (LOOKALIKE_ADMIN_TOKEN) as a bearer token.
"""

from __future__ import annotations

from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse
from pydantic import ValidationError

from gateway.catalogue_health import catalogue_health
from gateway.fair_shares import limited
from gateway.feedback import require_admin
from gateway.routes.dependencies import AdminToken, QueryIdIssuer, SearchAnalytics, Settings
from gateway.routes.feedback import ADMIN
from gateway.routes.page import STATIC
from gateway.staff_schemas import AnalyticsEvent, CatalogueHealth, EventAccepted, Overview, UnmetDemand
from lookalike.errors import BadEvent, EventTooLarge, NotShown, UnsupportedMediaType
from lookalike.service import error_responses

MAX_EVENT_BYTES = 4096
EVENT_MEDIA_TYPES = ("application/json", "text/plain")
EVENT_SCHEMA = AnalyticsEvent.model_json_schema()
EVENT_BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": EVENT_SCHEMA},
    "text/plain": {"schema": {"type": "string", "description": "The same JSON, as `navigator.sendBeacon` sends "
                                                              "it from a Blob of type text/plain."}}}}}
STAFF_ERRORS = error_responses(401, 503)
Days = Annotated[int, Query(ge=1, le=3660, description="The period: the last this many days.")]

router = APIRouter()


async def event_body(request: Request) -> bytes:
    """The body, refused with 413 past MAX_EVENT_BYTES (no event needs more) before all of it is read."""
    media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media not in EVENT_MEDIA_TYPES:
        raise UnsupportedMediaType("Send the event as JSON, with Content-Type application/json (or text/plain, "
                                   "as navigator.sendBeacon does).")
    too_large = EventTooLarge(f"An event is a small JSON object: at most {MAX_EVENT_BYTES} bytes.")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_EVENT_BYTES:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_EVENT_BYTES:
            raise too_large
    return bytes(body)


@router.post("/api/v1/events", status_code=202, response_model=EventAccepted,
             responses=error_responses(410, 413, 415, 422, 429), openapi_extra=EVENT_BODY,
             dependencies=[limited("events", operator_exempt=True)])
async def event(request: Request, query_ids: QueryIdIssuer, analytics: SearchAnalytics) -> EventAccepted:
    """Report what a shopper did with a result: `click` (the page and the widget send it), `add_to_cart` or
    `purchase` (the store's own site). `query_id` is the search's; the product must be one it showed."""
    try:
        reported = AnalyticsEvent.model_validate_json(await event_body(request))
    except ValidationError as exc:
        where = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors()[:3])
        raise BadEvent("Send a JSON object {\"type\": \"click\" | \"add_to_cart\" | \"purchase\", \"query_id\": "
                       f"\"...\", \"product\": \"...\", \"position\": 1}}. Here: {where}.") from None
    receipt = query_ids.verify(reported.query_id, None, check_session=False)
    shown = query_ids.position(receipt, reported.product)
    if shown is None:
        raise NotShown(f"The search this query_id names did not show the product {reported.product!r}.")
    if reported.position is not None and reported.position != shown:
        raise NotShown(f"The search showed {reported.product!r} at position {shown}, not {reported.position}.")
    return EventAccepted(accepted=analytics.event(receipt.search_id, reported.type, reported.product, shown))


@router.get("/api/v1/staff/overview", response_model=Overview, responses=STAFF_ERRORS, dependencies=ADMIN)
async def overview(request: Request, admin_token: AdminToken, analytics: SearchAnalytics, days: Days = 30
                   ) -> Overview:
    """For staff (admin token): searches per day by kind, click-through and click position, searches with no
    result, and latency per day."""
    require_admin(request, admin_token)
    return await anyio.to_thread.run_sync(analytics.store.overview, days)


@router.get("/api/v1/staff/unmet", response_model=UnmetDemand, responses=STAFF_ERRORS, dependencies=ADMIN)
async def unmet(request: Request, admin_token: AdminToken, analytics: SearchAnalytics, days: Days = 30
                ) -> UnmetDemand:
    """For staff (admin token): what shoppers looked for and didn't find: words with no result or no click,
    photos of things the store doesn't sell, and the categories shoppers switched to."""
    require_admin(request, admin_token)
    return await anyio.to_thread.run_sync(analytics.store.unmet, days)


@router.get("/api/v1/staff/catalogue", response_model=CatalogueHealth, responses=STAFF_ERRORS, dependencies=ADMIN)
async def catalogue(request: Request, admin_token: AdminToken, settings: Settings) -> CatalogueHealth:
    """For staff (admin token): per category products, photos and self-evaluation; the versions kept; what the
    last indexing run left out, and why."""
    require_admin(request, admin_token)
    return await anyio.to_thread.run_sync(catalogue_health, settings.index)


@router.get("/staff", include_in_schema=False)
async def staff_page() -> FileResponse:
    """The staff page; it asks for the admin token and calls the endpoints above."""
    return FileResponse(STATIC / "staff.html")
