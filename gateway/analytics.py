"""Search analytics off the shopper's path: each search and event is queued, and one task writes batches.

A search only builds a small row and puts it on a bounded in-memory queue (`put_nowait`); the
writer task takes whatever is waiting, up to a batch, and writes it in one transaction on a
worker thread. When the database is down or slow, the queue fills and entries are dropped:
counted on /metrics (`analytics_entries_dropped_total`) and said once in the log, never a search
delayed or refused.

Privacy: no photo, no embedding, no IP, no raw session id. A session is an HMAC under a salt
derived from the signing secret and the UTC day, so one day's rows can't be joined to another's;
a request with `Sec-GPC: 1` is logged with no session at all (it counts in the aggregates only).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import time
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import anyio
from prometheus_client import Counter, Gauge

from gateway.query_ids import HEAD, SearchKind, purpose_key
from gateway.schemas import SearchResult, SimilarItems, TextSearchResult
from gateway.search_log import SearchLog
from gateway.staff_schemas import EventType
from lookalike.errors import FeedbackUnavailable
from lookalike.observability import Metrics
from lookalike.text_query import normalise_query

log = logging.getLogger("lookalike.gateway.analytics")

Table = Literal["search", "event"]
RETRY_AFTER_FAILURE_S = 1.0


class AnalyticsMetrics:
    """What the writer did, on the gateway's /metrics."""

    def __init__(self, metrics: Metrics) -> None:
        registry = metrics.registry
        self.written = Counter("analytics_entries_written_total", "Search-log rows and events written, by `table`.",
                               ["table"], registry=registry)
        self.dropped = Counter("analytics_entries_dropped_total", "Search-log rows and events lost: `queue_full` "
                               "(the database is slower than the searches) or `database` (it refused the batch).",
                               ["reason"], registry=registry)
        self.queued = Gauge("analytics_queue_entries", "Entries waiting to be written.", registry=registry)
        for table in ("search", "event"):
            self.written.labels(table)
        for reason in ("queue_full", "database"):
            self.dropped.labels(reason)


@dataclass(frozen=True)
class Entry:
    table: Table
    values: dict[str, Any]


def day_of(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d")


def search_id_of(query_id: str) -> str:
    """The search id inside a `query_id` this gateway just issued (no check: it made it)."""
    raw = base64.urlsafe_b64decode(query_id + "=" * (-len(query_id) % 4))
    return bytes(HEAD.unpack_from(raw)[2]).hex()


def decided_category(probabilities: dict[str, float]) -> str | None:
    return max(probabilities, key=probabilities.__getitem__) if probabilities else None


class SessionHashes:
    """A session id under the day's salt (from the signing secret): the same all day, unlinkable to another
    day's, and not reversible to the id without the secret."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret
        self._salt: tuple[str, bytes] = ("", b"")

    def __call__(self, session: str, day: str) -> str:
        if self._salt[0] != day:
            self._salt = (day, purpose_key(self._secret, "session-" + day))
        return hmac.new(self._salt[1], session.encode(), hashlib.sha256).hexdigest()[:32]


class Analytics:
    """The queue, its writer task, and the rows a search or an event becomes."""

    def __init__(self, store: SearchLog, secret: bytes, metrics: AnalyticsMetrics, *, enabled: bool = True,
                 queue_size: int = 10_000, batch_size: int = 500) -> None:
        self.store = store
        self.enabled = enabled
        self.metrics = metrics
        self.batch_size = batch_size
        self.queue: asyncio.Queue[Entry] = asyncio.Queue(queue_size)
        self.failure: str | None = None
        self.session_hash = SessionHashes(secret)
        self._database_down = False
        self._writer: asyncio.Task[None] | None = None
        metrics.queued.set_function(self.queue.qsize)

    def search(self, answer: SearchResult | TextSearchResult | SimilarItems, kind: SearchKind, *,
               session: str | None, where: list[str] | None, latency_ms: float) -> None:
        """Queue one search's row; nothing of it reaches the database on this request's time."""
        if not self.enabled:
            return
        now = time.time()
        day = day_of(now)
        category = chosen = None
        confidence = None
        if isinstance(answer, SearchResult):
            category = decided_category(answer.probabilities) or answer.category
            chosen = answer.category if answer.category != category else None
            confidence = answer.probabilities.get(category)
        elif isinstance(answer, SimilarItems):
            category = answer.category
        words = getattr(answer, "q", None)
        normalised = normalise_query(words) if words else ""
        timings = getattr(answer, "timings_ms", None) or {}
        self._offer(Entry("search", {
            "search_id": search_id_of(answer.query_id), "created_at": now, "day": day, "kind": kind,
            "session": self.session_hash(session, day) if session else None,
            "category": category, "confidence": confidence, "chosen": chosen,
            "best_score": answer.results[0].score if answer.results else None, "results": len(answer.results),
            "words": normalised or None, "filters": json.dumps(where)[:1000] if where else None,
            "latency_ms": float(timings.get("total", latency_ms)), "index_version": answer.index_version}))

    def event(self, search_id: str, event_type: EventType, product: str, position: int) -> bool:
        """Queue one event; False when analytics is off (it is dropped)."""
        if not self.enabled:
            return False
        self._offer(Entry("event", {"search_id": search_id, "created_at": time.time(), "type": event_type,
                                    "product": product, "position": position}))
        return True

    def _offer(self, entry: Entry) -> None:
        try:
            self.queue.put_nowait(entry)
        except asyncio.QueueFull:
            self.metrics.dropped.labels("queue_full").inc()
            self._say_down("the queue of log entries is full (GATEWAY_ANALYTICS_QUEUE)")

    def _say_down(self, why: str) -> None:
        if not self._database_down:
            self._database_down = True
            log.warning("search analytics: %s; entries are dropped, and counted on /metrics as "
                        "analytics_entries_dropped_total, until the feedback database keeps up again", why)

    def start(self) -> None:
        self._writer = asyncio.create_task(self._write_forever(), name="analytics-writer")
        self._writer.add_done_callback(self._stopped)

    async def stop(self, flush_s: float = 5.0) -> None:
        """Write what is queued (for at most `flush_s`), then end the writer."""
        if self._writer is not None:
            with suppress(TimeoutError):
                await asyncio.wait_for(self.drained(), flush_s)
            self._writer.remove_done_callback(self._stopped)
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)

    def _stopped(self, task: asyncio.Task[None]) -> None:
        """The writer must never end while the app runs: if it does, readiness fails and says why, loudly."""
        error = None if task.cancelled() else task.exception()
        self.failure = f"the analytics writer stopped: {error!r}" if error else "the analytics writer was cancelled"
        log.error("search analytics: %s; /readyz answers 503 until the gateway restarts", self.failure,
                  exc_info=error)

    async def drained(self) -> None:
        """Returns once every entry queued so far is written or dropped (tests; shutdown)."""
        await self.queue.join()

    async def _write_forever(self) -> None:
        while True:
            batch = [await self.queue.get()]
            while len(batch) < self.batch_size and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            try:
                await self._write(batch)
            finally:
                for _ in batch:
                    self.queue.task_done()

    async def _write(self, batch: list[Entry]) -> None:
        searches = [e.values for e in batch if e.table == "search"]
        events = [e.values for e in batch if e.table == "event"]
        try:
            await anyio.to_thread.run_sync(self.store.write, searches, events)
        except FeedbackUnavailable:
            self.metrics.dropped.labels("database").inc(len(batch))
            self._say_down("the feedback database can't be reached")
            await asyncio.sleep(RETRY_AFTER_FAILURE_S)  # meanwhile the queue bounds what waits
            return
        if self._database_down:
            self._database_down = False
            log.info("search analytics: the feedback database answers again; entries are written")
        self.metrics.written.labels("search").inc(len(searches))
        self.metrics.written.labels("event").inc(len(events))
