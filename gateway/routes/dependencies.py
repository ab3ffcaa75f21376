"""What the gateway's lifespan put on `app.state`, as route parameters."""

from __future__ import annotations

import time
from typing import Annotated, TypeVar

from fastapi import Depends, Query, Request

from gateway.analytics import Analytics
from gateway.feedback import Feedback, has_session, session_of
from gateway.query_ids import QueryIds, SearchKind
from gateway.schemas import SearchResult, SimilarItems, TextSearchResult
from gateway.search import SearchPipeline
from gateway.settings import GatewaySettings
from lookalike.service import from_state

Pipeline = Annotated[SearchPipeline, from_state("pipeline", SearchPipeline)]
Votes = Annotated[Feedback, from_state("feedback", Feedback)]
Settings = Annotated[GatewaySettings, from_state("settings", GatewaySettings)]
QueryIdIssuer = Annotated[QueryIds, from_state("query_ids", QueryIds)]
SearchAnalytics = Annotated[Analytics, from_state("analytics", Analytics)]
Answer = TypeVar("Answer", SearchResult, TextSearchResult, SimilarItems)


class Receipts:
    """Stamps a search's answer with its `query_id`: what it showed, to this request's session, now; and
    queues the search's row for the search log (`gateway.analytics`), which never delays the answer."""

    def __init__(self, request: Request, query_ids: QueryIdIssuer, analytics: SearchAnalytics,
                 logged: Annotated[bool, Query(alias="analytics", description=(
                     "false: leave this search out of the store's analytics (for the store's own tests)."))] = True
                 ) -> None:
        self.started = time.perf_counter()
        self.session = session_of(request) if has_session(request) else None
        self.query_ids = query_ids
        self.analytics = analytics if logged else None
        self.private = request.headers.get("sec-gpc", "").strip() == "1"  # Global Privacy Control: no session kept

    def stamp(self, answer: Answer, kind: SearchKind, where: list[str] | None = None) -> Answer:
        answer.query_id = self.query_ids.issue(kind, self.session, [result.id for result in answer.results])
        if self.analytics is not None:
            self.analytics.search(answer, kind, session=None if self.private else self.session, where=where,
                                  latency_ms=(time.perf_counter() - self.started) * 1000)
        return answer


Receipt = Annotated[Receipts, Depends(Receipts)]


def admin_token_of(settings: Settings) -> str | None:
    """The operator endpoints' token, None while none is configured (they are then off)."""
    return settings.admin_token.get_secret_value() if settings.admin_token else None


AdminToken = Annotated[str | None, Depends(admin_token_of)]
