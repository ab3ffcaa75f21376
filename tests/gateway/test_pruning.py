"""Feedback pruning goes on after a failed round, whatever the database said."""

from __future__ import annotations

import asyncio
import logging

import pytest
import sqlalchemy as sa

from gateway.app import prune_now_and_then
from lookalike.errors import FeedbackUnavailable

pytestmark = pytest.mark.anyio


class FlakyVotes:
    """Stands in for `Feedback`: its first rounds fail as a database can, the next ones prune."""

    def __init__(self, failures: list[Exception]) -> None:
        self.failures = failures
        self.rounds = 0
        self.pruned = asyncio.Event()

    async def prune(self) -> int:
        self.rounds += 1
        if self.failures:
            raise self.failures.pop(0)
        self.pruned.set()
        return 3


@pytest.mark.parametrize("failure", [
    sa.exc.IntegrityError("DELETE FROM feedback_events", {}, Exception("constraint")),
    sa.exc.ProgrammingError("DELETE FROM feedback_events", {}, Exception("no such table")),
    FeedbackUnavailable("down"),
], ids=["integrity", "programming", "unavailable"])
async def test_a_failed_round_is_logged_and_the_next_round_prunes(failure: Exception,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    votes = FlakyVotes([failure, failure])
    with caplog.at_level(logging.ERROR, "lookalike.gateway"):
        loop = asyncio.create_task(prune_now_and_then("feedback votes", votes.prune, 0.01))
        try:
            await asyncio.wait_for(votes.pruned.wait(), 5)
        finally:
            loop.cancel()
            await asyncio.gather(loop, return_exceptions=True)
    assert votes.rounds == 3
    assert sum("pruning feedback votes failed" in r.getMessage() for r in caplog.records) == 2

