"""What the gateway's lifespan put on `app.state`, as route parameters."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from gateway.feedback import Feedback
from gateway.search import SearchPipeline
from gateway.settings import GatewaySettings
from lookalike.service import from_state

Pipeline = Annotated[SearchPipeline, from_state("pipeline", SearchPipeline)]
Votes = Annotated[Feedback, from_state("feedback", Feedback)]
Settings = Annotated[GatewaySettings, from_state("settings", GatewaySettings)]


def admin_token_of(settings: Settings) -> str | None:
    """The operator endpoints' token, None while none is configured (they are then off)."""
    return settings.admin_token.get_secret_value() if settings.admin_token else None


AdminToken = Annotated[str | None, Depends(admin_token_of)]
