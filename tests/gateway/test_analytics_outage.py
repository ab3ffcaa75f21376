"""The analytics database killed under load: a real PostgreSQL of this test's own, stopped mid-run.

Searches keep answering 200; the entries the writer cannot write are dropped, counted on /metrics,
and said once in the log. Before the kill, at normal load, no entry is lost: rows equal searches.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.feedback_store import engine_url, search_log
from gateway.settings import GatewaySettings
from tests.gateway.test_analytics_api import STAFF, TOKEN, fake_services, photo_search, rows, written
from tests.support import postgres_binary, postgres_server, require_postgres


@pytest.fixture
def own_postgres() -> Iterator[str]:
    """A PostgreSQL server for this test alone, since the test kills it."""
    require_postgres()
    with postgres_server() as url:
        yield url


def kill(url: str) -> None:
    """Stop the server at once (`pg_ctl stop -m immediate`), as a crash would."""
    engine = sa.create_engine(engine_url(url, Path()))
    with engine.connect() as connection:
        data = connection.execute(sa.text("SHOW data_directory")).scalar_one()
    engine.dispose()
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    subprocess.run([*as_user, str(postgres_binary("pg_ctl")), "-D", data, "-m", "immediate", "-w", "stop"],
                   check=True, capture_output=True)


def counter(metrics: str, name: str, label: str) -> float:
    found = re.search(rf'^{name}{{[a-z]+="{label}"}} ([0-9.e+]+)$', metrics, re.MULTILINE)
    assert found, f"{name}{{{label}}} is not on /metrics"
    return float(found.group(1))


def test_searches_answer_while_the_database_is_down_and_the_lost_entries_are_counted(
        own_postgres: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = GatewaySettings(classifier_url="http://127.0.0.1:9001", similarity_url="http://127.0.0.1:9002",
                             index=tmp_path, feedback_db_url=own_postgres, lookalike_admin_token=TOKEN,
                             analytics_queue=20, searches_per_minute=0)  # 160 searches from one client
    with TestClient(create_app(config, httpx.MockTransport(fake_services))) as client, \
            ThreadPoolExecutor(8) as shoppers:
        before = list(shoppers.map(lambda _: photo_search(client, "chair:0.9"), range(40)))
        assert len(rows(client, search_log)) == len(before) == 40  # at normal load, no entry is lost
        kill(own_postgres)
        during = list(shoppers.map(lambda _: photo_search(client, "chair:0.9"), range(120)))
        assert len(during) == 120 and all(answer["query_id"] for answer in during)  # each a 200
        written(client)
        metrics = client.get("/metrics", headers=STAFF).text  # the operator token reads the gateway's /metrics
        lost = counter(metrics, "analytics_entries_dropped_total", "database") + \
            counter(metrics, "analytics_entries_dropped_total", "queue_full")
        assert counter(metrics, "analytics_entries_written_total", "search") == 40
        assert lost == 120
        down = client.get("/api/v1/staff/overview", headers=STAFF)
        assert down.status_code == 503 and down.json()["error"]["code"] == "feedback_unavailable"
    said = [r for r in caplog.records if "entries are dropped" in r.getMessage()]
    assert len(said) == 1
