"""The feedback store against real databases: an SQLite file and a PostgreSQL server, one code path."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from gateway.feedback_store import FeedbackStore, Limits, alembic_config, engine_url, metadata, session_key
from lookalike.errors import FeedbackCapReached, FeedbackDatabaseError, FeedbackRateLimited

DAY = 86400.0
NOW = 1_800_000_000.0


def open_store(url: str, **limits: float) -> FeedbackStore:
    store = FeedbackStore(engine_url(url, Path()), Limits(**limits))
    store.migrate()
    return store


def test_after_votes_from_three_sessions_an_unknown_term_returns_the_liked_items(feedback_db_url: str) -> None:
    store = open_store(feedback_db_url)
    for session in ("shopper-one", "shopper-two", "shopper-three"):
        store.record(session, "Nursery", None, "crib-1", "like", now=NOW)
        store.record(session, "nursery", None, "lamp-7", "unlike", now=NOW)
    store.record("shopper-one", "nursery", None, "chair-2", "like", now=NOW)
    assert store.net_votes("NURSERY", now=NOW) == {"crib-1": 3, "lamp-7": -3, "chair-2": 1}
    assert store.net_votes("seat", now=NOW) == {}


def test_one_session_voting_fifty_times_counts_once(feedback_db_url: str) -> None:
    store = open_store(feedback_db_url, per_minute=100)
    for i in range(50):
        store.record("eager-client", "seat", None, "chair-1", "like", now=NOW + i)
    store.record("someone-else", "seat", None, "chair-1", "unlike", now=NOW)
    assert store.net_votes("seat", now=NOW + 60) == {}  # +1 and -1: a tie between two sessions
    store.record("a-third-one", "seat", None, "chair-1", "like", now=NOW)
    assert store.net_votes("seat", now=NOW + 60) == {"chair-1": 1}


def test_sessions_of_one_network_count_once_by_their_majority(feedback_db_url: str) -> None:
    store = open_store(feedback_db_url, per_minute=100)
    for n in range(20):
        store.record(f"sockpuppet-{n}", "seat", None, "chair-1", "like", now=NOW, network="office")
    assert store.net_votes("seat", now=NOW) == {"chair-1": 1}
    for n in range(5):  # a session voting fifty times is one session of its network
        store.record("colleague", "seat", None, "chair-2", "unlike", now=NOW + n, network="office")
    store.record("boss", "seat", None, "chair-2", "like", now=NOW, network="office")
    store.record("intern", "seat", None, "chair-2", "like", now=NOW, network="office")
    assert store.net_votes("seat", now=NOW + 60) == {"chair-1": 1, "chair-2": 1}  # sessions 2 to 1: one like
    store.record("at-home", "seat", None, "chair-1", "unlike", now=NOW, network="home")
    store.record("in-a-cafe", "seat", None, "chair-1", "unlike", now=NOW, network="cafe")
    assert store.net_votes("seat", now=NOW + 60) == {"chair-1": -1, "chair-2": 1}


def test_a_vote_stored_without_a_network_counts_as_its_sessions_own(feedback_db_url: str) -> None:
    store = open_store(feedback_db_url)
    store.record("before-0003", "seat", None, "chair-1", "like", now=NOW)
    store.record("also-before", "seat", None, "chair-1", "like", now=NOW)
    store.record("after-0003", "seat", None, "chair-1", "like", now=NOW, network="somewhere")
    assert store.net_votes("seat", now=NOW) == {"chair-1": 3}


def test_a_photos_votes_never_teach_the_word_photo(feedback_db_url: str) -> None:
    store = open_store(feedback_db_url)
    store.record("photo-shopper", None, "sofa", "sofa-3", "like", now=NOW, network="home")
    assert store.net_votes("photo", now=NOW) == {}
    store.record("words-shopper", "Photo", None, "frame-1", "like", now=NOW, network="home")
    assert store.net_votes("photo", now=NOW) == {"frame-1": 1}


def test_a_photo_vote_is_stored_as_photo_with_its_category_and_nothing_of_the_photo(feedback_db_url: str) -> None:
    store = open_store(feedback_db_url)
    store.record("photo-shopper", None, "sofa", "sofa-3", "like", now=NOW, network="5f3a" * 8)
    with store.engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT * FROM feedback_events")).mappings().all()
    assert len(rows) == 1
    assert {k: rows[0][k] for k in ("query", "category", "item_id", "vote")} == {
        "query": "photo", "category": "sofa", "item_id": "sofa-3", "vote": 1}
    assert rows[0]["session"] == session_key("photo-shopper") != "photo-shopper"
    assert rows[0]["network"] == "5f3a" * 8
    assert set(rows[0]) == {"id", "created_at", "session", "query", "category", "item_id", "vote", "network"}


def test_a_session_over_its_rate_is_refused_with_retry_after(feedback_db_url: str) -> None:
    store = open_store(feedback_db_url, per_minute=3)
    for i in range(3):
        store.record("fast-client", "lamp", None, f"lamp-{i}", "like", now=NOW + i)
    with pytest.raises(FeedbackRateLimited) as refused:
        store.record("fast-client", "lamp", None, "lamp-9", "like", now=NOW + 10)
    assert refused.value.status == 429 and refused.value.headers["Retry-After"] == "50"
    store.record("other-client", "lamp", None, "lamp-9", "like", now=NOW + 10)  # others are not slowed
    store.record("fast-client", "lamp", None, "lamp-9", "like", now=NOW + 61)  # a minute later it may go on


def test_replicas_voting_for_one_session_at_once_let_no_extra_vote_past_the_rate(feedback_db_url: str) -> None:
    """Two stores (two gateway replicas) and eight threads each: the count and the insert are one step."""
    replicas = [open_store(feedback_db_url, per_minute=10), open_store(feedback_db_url, per_minute=10)]

    def vote(attempt: int) -> bool:
        try:
            replicas[attempt % 2].record("racing-client", "seat", None, f"chair-{attempt}", "like", now=NOW)
        except FeedbackRateLimited:
            return False
        return True

    with ThreadPoolExecutor(max_workers=16) as pool:
        stored = sum(pool.map(vote, range(60)))
    with replicas[0].engine.connect() as connection:
        kept = connection.execute(sa.text("SELECT count(*) FROM feedback_events")).scalar_one()
    assert stored == kept == 10


def test_a_session_can_keep_only_so_many_votes(feedback_db_url: str) -> None:
    store = open_store(feedback_db_url, per_minute=100, per_session=5)
    for i in range(5):
        store.record("hoarder", "bed", None, f"bed-{i}", "like", now=NOW + 61 * i)
    with pytest.raises(FeedbackCapReached):
        store.record("hoarder", "bed", None, "bed-9", "like", now=NOW + 1000)


def test_votes_past_the_retention_period_are_ignored_and_pruned(feedback_db_url: str) -> None:
    store = open_store(feedback_db_url, retention_s=180 * DAY)
    store.record("old-shopper", "sofa", None, "sofa-1", "like", now=NOW)
    store.record("new-shopper", "sofa", None, "sofa-2", "like", now=NOW + 100 * DAY)
    later = NOW + 181 * DAY
    assert store.net_votes("sofa", now=later) == {"sofa-2": 1}
    assert store.prune(now=later) == 1
    assert store.stats()["votes"] == 1


def test_forgetting_a_session_deletes_only_its_votes(feedback_db_url: str) -> None:
    store = open_store(feedback_db_url)
    store.record("leaving", "desk", None, "table-1", "like", now=NOW)
    store.record("leaving", "desk", None, "table-2", "unlike", now=NOW)
    store.record("staying", "desk", None, "table-1", "like", now=NOW)
    assert store.forget("leaving") == 2
    assert store.net_votes("desk", now=NOW) == {"table-1": 1}
    assert store.forget("leaving") == 0


def test_migrations_run_once_and_votes_survive_reopening(feedback_db_url: str) -> None:
    first = open_store(feedback_db_url)
    first.record("loyal", "armchair", None, "chair-4", "like", now=NOW)
    first.dispose()
    again = open_store(feedback_db_url)
    assert again.migrate() == ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert again.net_votes("armchair", now=NOW) == {"chair-4": 1}


def test_a_fresh_database_gets_the_schema_under_alembic(feedback_db_url: str) -> None:
    store = open_store(feedback_db_url)
    tables = set(sa.inspect(store.engine).get_table_names())
    assert {"feedback_events", "alembic_version"} <= tables and "feedback_schema" not in tables
    indexes = {index["name"] for index in sa.inspect(store.engine).get_indexes("feedback_events")}
    assert indexes == {"feedback_by_query", "feedback_by_session", "feedback_by_time"}


def test_the_revisions_build_exactly_the_tables_the_code_reads_and_writes(feedback_db_url: str) -> None:
    """A change to the table in feedback_store.py without a revision (or the reverse) fails here."""
    store = open_store(feedback_db_url)
    with store.engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), metadata) == []


# What the gateway's hand-written migration 1 ran before Alembic (SQLAlchemy's DDL for each dialect),
# so these tests open a database exactly as a deployed gateway left it.
HAND_MIGRATED_DDL = {
    "sqlite": [
        "CREATE TABLE feedback_schema (version INTEGER NOT NULL)",
        """CREATE TABLE feedback_events (
            id INTEGER NOT NULL, created_at FLOAT NOT NULL, session VARCHAR(64) NOT NULL,
            "query" VARCHAR(200) NOT NULL, category VARCHAR(200), item_id VARCHAR(200) NOT NULL,
            vote SMALLINT NOT NULL, PRIMARY KEY (id))""",
        'CREATE INDEX feedback_by_query ON feedback_events ("query", item_id)',
        "CREATE INDEX feedback_by_session ON feedback_events (session, created_at)",
        "CREATE INDEX feedback_by_time ON feedback_events (created_at)",
        "INSERT INTO feedback_schema (version) VALUES (1)",
    ],
    "postgresql": [
        "CREATE TABLE feedback_schema (version INTEGER NOT NULL)",
        """CREATE TABLE feedback_events (
            id SERIAL NOT NULL, created_at FLOAT NOT NULL, session VARCHAR(64) NOT NULL,
            query VARCHAR(200) NOT NULL, category VARCHAR(200), item_id VARCHAR(200) NOT NULL,
            vote SMALLINT NOT NULL, PRIMARY KEY (id))""",
        "CREATE INDEX feedback_by_query ON feedback_events (query, item_id)",
        "CREATE INDEX feedback_by_session ON feedback_events (session, created_at)",
        "CREATE INDEX feedback_by_time ON feedback_events (created_at)",
        "INSERT INTO feedback_schema (version) VALUES (1)",
    ],
}


def test_a_database_the_hand_written_migrations_made_upgrades_in_place_with_every_vote_kept(
        feedback_db_url: str) -> None:
    url = engine_url(feedback_db_url, Path())
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        for statement in HAND_MIGRATED_DDL[connection.dialect.name]:
            connection.exec_driver_sql(statement)
        for n in range(40):  # as the old code stored them: normalised words, a hashed session, +1 / -1
            shopper = n % 8  # shoppers 0, 3, 6 like chair-0; 1, 4 like chair-1 and 7 unlikes it; 2, 5 like chair-2
            connection.execute(sa.text(
                "INSERT INTO feedback_events (created_at, session, query, category, item_id, vote) "
                "VALUES (:at, :session, :query, :category, :item, :vote)"),
                {"at": NOW + n, "session": session_key(f"shopper-{shopper}"), "query": "photo" if n % 5 == 0 else "seat",
                 "category": "chair" if n % 5 == 0 else None, "item": f"chair-{shopper % 3}",
                 "vote": -1 if shopper == 7 else 1})
    engine.dispose()

    store = open_store(feedback_db_url, per_minute=100)
    with store.engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT count(*) FROM feedback_events")).scalar_one()
    assert rows == 40
    assert store.stats() == {"votes": 40, "sessions": 8, "oldest": NOW}
    assert store.net_votes("seat", now=NOW + 60) == {"chair-0": 3, "chair-1": 1, "chair-2": 2}
    assert "feedback_schema" not in sa.inspect(store.engine).get_table_names()

    store.record("shopper-new", "Seat", None, "chair-9", "like", now=NOW + 60)  # new votes go on from the old ids
    assert store.net_votes("seat", now=NOW + 60)["chair-9"] == 1
    assert store.stats()["votes"] == 41
    store.dispose()
    assert open_store(feedback_db_url).stats()["votes"] == 41  # and a restart finds nothing more to do


def test_an_unreachable_database_stops_the_start_with_a_message() -> None:
    store = FeedbackStore(engine_url("postgresql://nobody@127.0.0.1:1/none", Path()))
    with pytest.raises(FeedbackDatabaseError, match="FEEDBACK_DB_URL"):
        store.migrate()
