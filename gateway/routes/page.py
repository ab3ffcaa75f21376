"""The web page at `/`; its scripts and styles are mounted at /static by `create_app`."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse

from gateway.feedback import SESSION_COOKIE, has_session, new_session_id
from gateway.routes.dependencies import Settings

STATIC = Path(__file__).parent.parent / "static"

router = APIRouter()


@router.get("/", include_in_schema=False)
async def page(request: Request, settings: Settings) -> FileResponse:
    """The page; a first visit gets a random session cookie, the only thing votes are tied to."""
    response = FileResponse(STATIC / "index.html")
    if not has_session(request):
        response.set_cookie(SESSION_COOKIE, new_session_id(), max_age=int(settings.feedback_retention_days * 86400),
                            httponly=True, samesite="lax", secure=settings.session_cookie_secure)
    return response
