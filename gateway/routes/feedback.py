"""Shoppers' votes: cast and forget them; operators' views of what they taught.

The session a vote belongs to travels in the `X-Session-ID` header or the page's `lookalike_session`
cookie, and operators send the admin token as a bearer token. `gateway.feedback` reads them from
the request; the parameters and the security scheme below only declare them, so the OpenAPI page
tells clients what to send. They refuse nothing themselves: a missing or malformed session is the
422 `missing_session`, a missing or wrong token the 401 `admin_token_required`, as before.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Cookie, Depends, Header, Query, Request, Security
from fastapi.security import HTTPBearer

from gateway.clients import client_address
from gateway.fair_shares import limited
from gateway.feedback import SESSION_COOKIE, SESSION_HEADER, require_admin, session_of
from gateway.routes.dependencies import AdminToken, Votes
from gateway.schemas import FeedbackForgotten, FeedbackStats, FeedbackStored, FeedbackVote, LearnedForQuery
from lookalike.service import error_responses
from lookalike.text_query import MAX_QUERY_CHARS

FEEDBACK_ERRORS = error_responses(401, 422, 429, 503)
VOTE_ERRORS = error_responses(410, 422, 429, 503)
ADMIN_SCHEME = HTTPBearer(
    scheme_name="admin_token", auto_error=False,
    description="Operators: the gateway's LOOKALIKE_ADMIN_TOKEN, as `Authorization: Bearer <token>`.")


def declared_session(
    header: Annotated[str | None, Header(alias=SESSION_HEADER, description=(
        "The anonymous session the votes belong to: any random string of 8 to 128 letters, digits or '-._~'. "
        "This or the cookie is needed; without either, 422 `missing_session`."))] = None,
    cookie: Annotated[str | None, Cookie(alias=SESSION_COOKIE, description=(
        "The session the page's first visit gets, used when there is no header."))] = None,
) -> None:
    """Declares where the session comes from; `session_of` reads it from the request."""


SESSION = [Depends(declared_session)]
ADMIN = [Security(ADMIN_SCHEME)]
# The admin token only to forget another session than the caller's: `{}` says the call needs none otherwise.
OPTIONAL_ADMIN: dict[str, Any] = {"security": [{}]}

router = APIRouter()


@router.post("/api/v1/feedback", status_code=201, response_model=FeedbackStored, responses=VOTE_ERRORS,
             dependencies=[*SESSION, limited("votes")])
async def feedback(vote: FeedbackVote, request: Request, votes: Votes) -> FeedbackStored:
    """Like or unlike a result, for later searches with the same words. Needs `X-Session-ID` or the page's cookie,
    the same as the search had, and that search's `query_id`: 422 `item_not_shown` for a product it did not return,
    422 `bad_query_id` for an id it did not issue to this session, 410 `query_id_expired` for an old one.
    Learning counts each client network (IPv4 /24, IPv6 /64) once, however many sessions vote from it."""
    session = session_of(request) or ""
    return await votes.vote(session, votes.network_of(client_address(request)), vote)


@router.delete("/api/v1/feedback", response_model=FeedbackForgotten, responses=FEEDBACK_ERRORS,
               dependencies=SESSION + ADMIN, openapi_extra=OPTIONAL_ADMIN)
async def forget(request: Request, votes: Votes, admin_token: AdminToken, session: str | None = Query(
        None, max_length=128, description="The session to forget; another than the caller's needs the admin token.")
) -> FeedbackForgotten:
    """Forget every vote of a session: the caller's own, or (with the admin token) anyone's."""
    own = session_of(request, required=session is None)
    if session is not None and session != own:
        require_admin(request, admin_token)
    return FeedbackForgotten(forgotten=await votes.forget(session or own or ""))


@router.get("/api/v1/feedback/stats", response_model=FeedbackStats, responses=FEEDBACK_ERRORS, dependencies=ADMIN)
async def feedback_stats(request: Request, votes: Votes, admin_token: AdminToken) -> FeedbackStats:
    """For operators (admin token): how many votes and sessions are kept, and since when."""
    require_admin(request, admin_token)
    return await votes.stats()


@router.get("/api/v1/feedback/learned", response_model=LearnedForQuery, responses=FEEDBACK_ERRORS, dependencies=ADMIN)
@router.get("/api/v1/feedback/learnt", response_model=LearnedForQuery, responses=FEEDBACK_ERRORS, dependencies=ADMIN,
            include_in_schema=False)  # the first spelling, kept so that nothing calling it breaks
async def learnt(request: Request, votes: Votes, admin_token: AdminToken,
                 q: str = Query(..., min_length=1, max_length=MAX_QUERY_CHARS)) -> LearnedForQuery:
    """For operators (admin token): what shoppers' votes taught these words, as text searches will blend it."""
    require_admin(request, admin_token)
    return await votes.learned_for(q)
