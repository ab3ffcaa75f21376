"""Shoppers' votes, kept in a real database: SQLite by default, PostgreSQL for several gateway replicas.

One code path for both, through SQLAlchemy Core. What is stored, per vote: the normalised query
(or "photo" and the decided category), the item id, +1 or -1, the time, a SHA-256 of the
anonymous session id, and a salted hash of the client's network (`gateway.clients.network_key`).
Never the photo, never its embedding, never the raw session id or address.

Every limit is read from the database, not from memory, so replicas stay interchangeable: the
per-minute rate and the per-session cap count the session's rows. The schema is migrated by
Alembic at start-up (`migrate`, revisions in gateway/feedback_migrations/), under a lock, so
replicas starting together don't race.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from gateway.feedback_migrations import SCRIPT_LOCATION
from lookalike.errors import FeedbackCapReached, FeedbackDatabaseError, FeedbackRateLimited, FeedbackUnavailable
from lookalike.text_query import MAX_QUERY_CHARS, normalise_query

Vote = Literal["like", "unlike"]
PHOTO_QUERY = "photo"
SQLITE_FILE = "feedback.sqlite3"

metadata = sa.MetaData()
"""The schema as this code reads and writes it; gateway/feedback_migrations/ builds it, revision by revision."""
events = sa.Table(
    "feedback_events", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("created_at", sa.Float, nullable=False, doc="Unix time, seconds."),
    sa.Column("session", sa.String(64), nullable=False, doc="SHA-256 (hex) of the session id."),
    sa.Column("query", sa.String(MAX_QUERY_CHARS), nullable=False, doc="Normalised words, or 'photo'."),
    sa.Column("category", sa.String(200), nullable=True, doc="The decided category of a photo search."),
    sa.Column("item_id", sa.String(200), nullable=False),
    sa.Column("vote", sa.SmallInteger, nullable=False, doc="+1 like, -1 unlike."),
    sa.Column("network", sa.String(32), nullable=True,
              doc="Salted hash of the client's IPv4 /24 or IPv6 /64; null for votes stored before revision 0003."),
    sa.Index("feedback_by_query", "query", "item_id"),
    sa.Index("feedback_by_session", "session", "created_at"),
    sa.Index("feedback_by_time", "created_at"),
)
gateway_secrets = sa.Table(
    "gateway_secrets", metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.String(128), nullable=False, doc="Hex; never leaves the database but to a gateway."),
    sa.Column("created_at", sa.Float, nullable=False),
)
search_log = sa.Table(
    "search_log", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("search_id", sa.String(16), nullable=False, doc="The query_id's search id: what events join on."),
    sa.Column("created_at", sa.Float, nullable=False, doc="Unix time, seconds."),
    sa.Column("day", sa.String(10), nullable=False, doc="UTC date, YYYY-MM-DD."),
    sa.Column("kind", sa.String(16), nullable=False, doc="photo, steered, words, photo_words or similar."),
    sa.Column("session", sa.String(32), nullable=True, doc="Keyed hash of the session under that day's salt; "
              "NULL for Sec-GPC or no session."),
    sa.Column("category", sa.String(200), nullable=True, doc="The classifier's decision (photo kinds)."),
    sa.Column("confidence", sa.Float, nullable=True),
    sa.Column("chosen", sa.String(200), nullable=True, doc="The category the shopper switched to, if another."),
    sa.Column("best_score", sa.Float, nullable=True),
    sa.Column("results", sa.Integer, nullable=False),
    sa.Column("words", sa.String(MAX_QUERY_CHARS), nullable=True, doc="Normalised words, if any."),
    sa.Column("filters", sa.String(1000), nullable=True, doc="The `where` filters, JSON."),
    sa.Column("latency_ms", sa.Float, nullable=False),
    sa.Column("index_version", sa.String(100), nullable=True),
    sa.Index("search_log_by_time", "created_at"),
    sa.Index("search_log_by_search", "search_id"),
)
search_events = sa.Table(
    "search_events", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("search_id", sa.String(16), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("type", sa.String(16), nullable=False, doc="click, add_to_cart or purchase."),
    sa.Column("product", sa.String(200), nullable=False),
    sa.Column("position", sa.Integer, nullable=False, doc="Where the search showed it, from 1."),
    sa.Index("search_events_by_search", "search_id"),
    sa.Index("search_events_by_time", "created_at"),
)
MIGRATION_LOCK = 1506
"""PostgreSQL advisory lock key held while one replica migrates."""


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's settings, in code: the revisions shipped in the package, and the connection to migrate."""
    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    config.attributes["connection"] = connection
    return config


def session_key(session_id: str) -> str:
    """What is stored instead of the session id, so the table alone can't be joined to a browser."""
    return hashlib.sha256(session_id.encode()).hexdigest()


def engine_url(url: str, index_root: Path) -> str:
    """FEEDBACK_DB_URL as SQLAlchemy wants it: postgresql:// through psycopg 3; empty is the SQLite file."""
    if not url:
        return f"sqlite:///{index_root / SQLITE_FILE}"
    for scheme in ("postgresql://", "postgres://"):
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url[len(scheme):]
    return url


def _sqlite_transactions(engine: Engine) -> None:
    """pysqlite's own transaction handling skips BEGIN for DDL; take the write lock up front instead.

    SQLAlchemy's documented recipe: hand transactions to SQLite, and BEGIN IMMEDIATE so two
    writers (two processes at start-up, or a rate check and its insert) queue instead of interleaving.
    """

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _: Any) -> None:
        dbapi_connection.isolation_level = None
        dbapi_connection.execute("PRAGMA journal_mode=WAL")
        dbapi_connection.execute("PRAGMA busy_timeout=10000")

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


@dataclass(frozen=True)
class Limits:
    per_minute: int = 30
    per_session: int = 1000
    retention_s: float = 180 * 86400


class FeedbackStore:
    """Votes in, learned associations out; every method is one short transaction (call it off the event loop)."""

    def __init__(self, url: str, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            database = url.removeprefix("sqlite:///")
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
        self.engine = sa.create_engine(url, pool_pre_ping=not self.is_sqlite)
        if self.is_sqlite:
            _sqlite_transactions(self.engine)

    def dispose(self) -> None:
        self.engine.dispose()

    def migrate(self) -> str:
        """Upgrade the schema to Alembic's head; returns its revision. A FeedbackDatabaseError says what went wrong.

        One transaction: on PostgreSQL it holds an advisory lock, so replicas starting together queue
        and the later ones find nothing to do; SQLite's BEGIN IMMEDIATE queues them by itself.
        """
        try:
            with self.engine.begin() as connection:
                if connection.dialect.name == "postgresql":
                    connection.execute(sa.select(sa.func.pg_advisory_xact_lock(MIGRATION_LOCK)))
                command.upgrade(alembic_config(connection), "head")
                return str(MigrationContext.configure(connection).get_current_revision())
        except sa.exc.SQLAlchemyError as exc:
            cause = getattr(exc, "orig", None) or exc
            raise FeedbackDatabaseError(
                f"The feedback database ({self.engine.url.render_as_string(hide_password=True)}) can't be opened or "
                f"migrated: {type(cause).__name__}: {cause}. Check FEEDBACK_DB_URL.") from None

    def _run(self, work: Callable[[Connection], Any]) -> Any:
        try:
            with self.engine.begin() as connection:
                return work(connection)
        except sa.exc.OperationalError:
            raise FeedbackUnavailable("Votes can't be saved or read right now. Please try again shortly.",
                                      headers={"Retry-After": "5"}) from None

    def shared_secret(self, name: str) -> bytes:
        """A random secret every replica on this database shares, made by whichever asks first (32 bytes)."""

        def work(connection: Connection) -> bytes:
            if not self.is_sqlite:
                connection.execute(sa.select(sa.func.pg_advisory_xact_lock(MIGRATION_LOCK)))
            found = connection.execute(sa.select(gateway_secrets.c.value).where(gateway_secrets.c.name == name)).scalar()
            if found is None:
                found = secrets.token_hex(32)
                connection.execute(gateway_secrets.insert().values(name=name, value=found, created_at=time.time()))
            return bytes.fromhex(found)

        return bytes(self._run(work))

    def record(self, session_id: str, query: str | None, category: str | None, item_id: str, vote: Vote,
               now: float | None = None, network: str | None = None) -> None:
        """Store one vote, unless the session is over its rate or its cap (FeedbackRateLimited, FeedbackCapReached).

        `network` is the client network's salted hash (`gateway.clients.network_key`): learning
        counts networks. Without one, the vote counts as its session's own network.
        """
        now = time.time() if now is None else now
        session = session_key(session_id)
        stored_query = PHOTO_QUERY if query is None else normalise_query(query)

        def work(connection: Connection) -> None:
            if not self.is_sqlite:  # SQLite's BEGIN IMMEDIATE already queues every writer
                # Replicas check the same session's rate at once: without a lock each could see 29 of 30
                # and both insert. A transaction-scoped advisory lock on the session queues them.
                connection.execute(sa.select(sa.func.pg_advisory_xact_lock(int(session[:15], 16))))
            mine = events.c.session == session
            recent = connection.execute(
                sa.select(sa.func.count(), sa.func.min(events.c.created_at))
                .where(mine, events.c.created_at > now - 60)).one()
            if recent[0] >= self.limits.per_minute:
                wait = max(1, math.ceil(recent[1] + 60 - now))
                raise FeedbackRateLimited(
                    f"Too many votes from this session: at most {self.limits.per_minute} a minute. "
                    f"Try again in {wait} s.", headers={"Retry-After": str(wait)})
            kept = connection.execute(sa.select(sa.func.count(), sa.func.min(events.c.created_at))
                                      .where(mine, events.c.created_at > now - self.limits.retention_s)).one()
            if kept[0] >= self.limits.per_session:
                wait = max(1, math.ceil(kept[1] + self.limits.retention_s - now))
                raise FeedbackCapReached(
                    f"This session has sent {self.limits.per_session} votes, the most one session may keep. "
                    "Older votes expire with the retention period.", headers={"Retry-After": str(wait)})
            connection.execute(events.insert().values(
                created_at=now, session=session, query=stored_query, category=None if query is not None else category,
                item_id=item_id, vote=1 if vote == "like" else -1, network=network))

        self._run(work)

    def net_votes(self, query: str, now: float | None = None) -> dict[str, int]:
        """Per item, the client networks that liked it for these words minus those that unliked it.

        Two steps, so that neither a session nor a network outvotes the others by voting more:
        a session counts once per item (+1 if it liked more than it unliked, -1 for the reverse,
        nothing for a tie); a network counts once per item, by the sign of its sessions' sum.
        A vote stored without a network (before revision 0003) is its session's own network.
        Only votes on words count (a photo's votes, stored as "photo", never teach the word
        "photo"), and only those within the retention period.
        """
        now = time.time() if now is None else now
        term = normalise_query(query)
        network = sa.func.coalesce(events.c.network, events.c.session)
        per_session = (
            sa.select(events.c.item_id, network.label("network"),
                      sa.case((sa.func.sum(events.c.vote) > 0, 1), (sa.func.sum(events.c.vote) < 0, -1),
                              else_=0).label("sign"))
            .where(events.c.query == term, events.c.category.is_(None),
                   events.c.created_at > now - self.limits.retention_s)
            .group_by(events.c.item_id, network, events.c.session).subquery())
        per_network = (
            sa.select(per_session.c.item_id, sa.func.sum(per_session.c.sign).label("net"))
            .group_by(per_session.c.item_id, per_session.c.network).subquery())
        sign = sa.case((per_network.c.net > 0, 1), (per_network.c.net < 0, -1), else_=0)
        statement = sa.select(per_network.c.item_id, sa.func.sum(sign)).group_by(per_network.c.item_id)
        rows = self._run(lambda connection: connection.execute(statement).all())
        return {item_id: int(net) for item_id, net in rows if net}

    def forget(self, session_id: str) -> int:
        """Delete every vote of this session; returns how many."""
        statement = events.delete().where(events.c.session == session_key(session_id))
        return int(self._run(lambda connection: connection.execute(statement).rowcount))

    def prune(self, now: float | None = None) -> int:
        """Delete votes older than the retention period; returns how many."""
        now = time.time() if now is None else now
        statement = events.delete().where(events.c.created_at <= now - self.limits.retention_s)
        return int(self._run(lambda connection: connection.execute(statement).rowcount))

    def stats(self) -> dict[str, float | int | None]:
        """Counts for an operator: votes, sessions, and the oldest vote's time."""
        statement = sa.select(sa.func.count(), sa.func.count(sa.distinct(events.c.session)),
                              sa.func.min(events.c.created_at))
        votes, sessions, oldest = self._run(lambda connection: connection.execute(statement).one())
        return {"votes": int(votes), "sessions": int(sessions), "oldest": oldest}
