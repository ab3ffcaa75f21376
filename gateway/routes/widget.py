"""The `<lookalike-search>` widget for a store's own pages: `/widget.js` and the dialog it loads on first open.

Any site may load these (gateway.cross_origin makes them public); whether its pages may then call the
API is GATEWAY_ALLOWED_ORIGINS's to say.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request
from fastapi.responses import Response

from gateway.widget_assets import WidgetAssets
from lookalike.errors import NotFound
from lookalike.service import from_state

Assets = Annotated[WidgetAssets, from_state("widget", WidgetAssets)]

router = APIRouter()


@router.get("/widget.js", include_in_schema=False)
async def widget(request: Request, assets: Assets) -> Response:
    """The one script a store adds to its pages: it defines `<lookalike-search>`."""
    return assets.entry.response(request.headers)


@router.get("/widget/{name}", include_in_schema=False)
async def widget_chunk(name: str, request: Request, assets: Assets) -> Response:
    """A part of the widget loaded when needed, named by its content's hash."""
    chunk = assets.chunks.get(name)
    if chunk is None:
        raise NotFound(f"There is no widget file {name!r}; reload the page to get the current widget.")
    return chunk.response(request.headers)
