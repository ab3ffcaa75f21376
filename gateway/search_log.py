"""The search log in the feedback database: rows written in batches, pruned, and summed for the staff page.

One code path for SQLite and PostgreSQL (SQLAlchemy Core). Counts are summed by the database;
the latency percentiles and the usual range of best scores are computed here from the period's
values. Every method is one short transaction: call it off the event loop.
"""

from __future__ import annotations

import math
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from gateway.feedback_store import search_events, search_log
from gateway.staff_schemas import (
    CategorySwitch,
    LatencyOfDay,
    Overview,
    ScoreBin,
    SearchesOfDay,
    UnmetDemand,
    WeakCategory,
    WordsCount,
)
from lookalike.errors import FeedbackUnavailable

DAY_S = 86400.0
PHOTO_KINDS = ("photo", "steered", "photo_words")
TOP_WORDS = 100
SCORE_BINS = 20
MIN_FOR_RANGE = 4


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of values sorted ascending (at least one)."""
    return sorted_values[max(0, math.ceil(fraction * len(sorted_values)) - 1)]


def usual_low(scores: list[float]) -> float | None:
    """Tukey's lower fence: below it a best score is out of the category's usual range."""
    if len(scores) < MIN_FOR_RANGE:
        return None
    q1, _, q3 = statistics.quantiles(scores, n=4, method="inclusive")
    return q1 - 1.5 * (q3 - q1)


def share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


class SearchLog:
    """Writes and reads the `search_log` and `search_events` tables the Alembic revision 0004 made."""

    def __init__(self, engine: Engine, retention_s: float) -> None:
        self.engine = engine
        self.retention_s = retention_s

    def _run(self, work: Callable[[Connection], Any]) -> Any:
        try:
            with self.engine.begin() as connection:
                return work(connection)
        except sa.exc.SQLAlchemyError:
            raise FeedbackUnavailable("The analytics database can't be reached right now. Please try again shortly.",
                                      headers={"Retry-After": "5"}) from None

    def write(self, searches: list[dict[str, Any]], events: list[dict[str, Any]]) -> None:
        """One batch, one transaction: all of it is written, or (FeedbackUnavailable) none."""

        def work(connection: Connection) -> None:
            if searches:
                connection.execute(search_log.insert(), searches)
            if events:
                connection.execute(search_events.insert(), events)

        self._run(work)

    def prune(self, now: float | None = None) -> int:
        """Delete searches and events older than the retention period; returns how many rows."""
        cutoff = (time.time() if now is None else now) - self.retention_s

        def work(connection: Connection) -> int:
            gone = connection.execute(search_log.delete().where(search_log.c.created_at <= cutoff)).rowcount
            return int(gone + connection.execute(search_events.delete().where(search_events.c.created_at <= cutoff))
                       .rowcount)

        return int(self._run(work))

    def overview(self, days: int, now: float | None = None) -> Overview:
        since = (time.time() if now is None else now) - days * DAY_S
        in_period = search_log.c.created_at >= since

        def work(connection: Connection) -> Overview:
            per_day = connection.execute(
                sa.select(search_log.c.day, search_log.c.kind, sa.func.count())
                .where(in_period).group_by(search_log.c.day, search_log.c.kind)
                .order_by(search_log.c.day, search_log.c.kind)).all()
            searches, empty = connection.execute(sa.select(
                sa.func.count(), sa.func.coalesce(sa.func.sum(sa.case((search_log.c.results == 0, 1), else_=0)), 0))
                .where(in_period)).one()
            sessions = connection.execute(sa.select(sa.func.count()).select_from(
                sa.select(search_log.c.day, search_log.c.session).where(in_period, search_log.c.session.is_not(None))
                .distinct().subquery())).scalar_one()
            joined = search_events.join(search_log, search_log.c.search_id == search_events.c.search_id)
            acted = {kind: (int(n), int(searched), position) for kind, n, searched, position in connection.execute(
                sa.select(search_events.c.type, sa.func.count(), sa.func.count(sa.distinct(search_events.c.search_id)),
                          sa.func.avg(search_events.c.position))
                .select_from(joined).where(in_period).group_by(search_events.c.type)).all()}
            latencies: dict[str, list[float]] = defaultdict(list)
            for day, latency in connection.execute(sa.select(search_log.c.day, search_log.c.latency_ms).where(in_period)):
                latencies[day].append(float(latency))
            clicks, clicked, position = acted.get("click", (0, 0, None))
            return Overview(
                since=since, days=days, searches=int(searches), sessions=int(sessions),
                no_result_share=share(int(empty), int(searches)), clicks=clicks,
                click_through_rate=share(clicked, int(searches)),
                mean_click_position=float(position) if position is not None else None,
                add_to_cart=acted.get("add_to_cart", (0, 0, None))[0], purchases=acted.get("purchase", (0, 0, None))[0],
                conversion_rate=share(acted.get("purchase", (0, 0, None))[1], int(searches)),
                per_day=[SearchesOfDay(day=day, kind=kind, searches=int(n)) for day, kind, n in per_day],
                latency=[LatencyOfDay(day=day, searches=len(values), median_ms=percentile(values, 0.5),
                                      p95_ms=percentile(values, 0.95))
                         for day, values in sorted((d, sorted(v)) for d, v in latencies.items())])

        result: Overview = self._run(work)
        return result

    def unmet(self, days: int, now: float | None = None) -> UnmetDemand:
        since = (time.time() if now is None else now) - days * DAY_S
        in_period = search_log.c.created_at >= since
        words = search_log.c.words
        searches = sa.func.count().label("searches")

        def work(connection: Connection) -> UnmetDemand:
            no_results = connection.execute(
                sa.select(words, searches).where(in_period, words.is_not(None), search_log.c.results == 0)
                .group_by(words).order_by(searches.desc(), words).limit(TOP_WORDS)).all()
            clicked = sa.select(search_events.c.search_id).where(search_events.c.type == "click")
            was_clicked = sa.func.sum(sa.case((search_log.c.search_id.in_(clicked), 1), else_=0))
            no_clicks = connection.execute(
                sa.select(words, searches).where(in_period, words.is_not(None), search_log.c.results > 0)
                .group_by(words).having(was_clicked == 0).order_by(searches.desc(), words).limit(TOP_WORDS)).all()
            searched = sa.func.coalesce(search_log.c.chosen, search_log.c.category)
            scores: dict[str, list[float]] = defaultdict(list)
            for category, best in connection.execute(
                    sa.select(searched, search_log.c.best_score).where(
                        in_period, search_log.c.kind.in_(PHOTO_KINDS), search_log.c.best_score.is_not(None))):
                scores[category].append(float(best))
            switches = connection.execute(
                sa.select(search_log.c.category, search_log.c.chosen, searches)
                .where(in_period, search_log.c.chosen.is_not(None))
                .group_by(search_log.c.category, search_log.c.chosen)
                .order_by(searches.desc(), search_log.c.category, search_log.c.chosen)).all()
            return UnmetDemand(
                since=since, days=days,
                no_results=[WordsCount(words=w, searches=int(n)) for w, n in no_results],
                no_clicks=[WordsCount(words=w, searches=int(n)) for w, n in no_clicks],
                weak_photos=[weak_category(category, values) for category, values in sorted(scores.items())],
                best_scores=histogram([s for values in scores.values() for s in values]),
                switches=[CategorySwitch(decided=d, chosen=c, searches=int(n)) for d, c, n in switches])

        result: UnmetDemand = self._run(work)
        return result


def weak_category(category: str, scores: list[float]) -> WeakCategory:
    low = usual_low(scores)
    below = sum(s < low for s in scores) if low is not None else 0
    return WeakCategory(category=category, photo_searches=len(scores), usual_low=low, below=below,
                        share=share(below, len(scores)) if low is not None else None)


def histogram(scores: list[float]) -> list[ScoreBin]:
    """Best scores in SCORE_BINS equal bins from 0 to 1 (a negative score counts in the first, 1 in the last)."""
    counts = [0] * SCORE_BINS
    for score in scores:
        counts[min(SCORE_BINS - 1, max(0, int(score * SCORE_BINS)))] += 1
    return [ScoreBin(low=i / SCORE_BINS, high=(i + 1) / SCORE_BINS, searches=n) for i, n in enumerate(counts)]
