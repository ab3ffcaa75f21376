"""Feedback with real processes: the gateway (or two replicas) and the similarity service on loopback,
a real SQLite file or a real PostgreSQL server, real HTTP. No classifier is needed to vote.

Each shopper searches the words, then votes with the answer's `query_id`, from an address of its own
network (127.0.N.1: all of 127.0.0.0/8 is loopback on Linux)."""

from __future__ import annotations

import csv
from pathlib import Path

import httpx
import pytest

from tests.support import Replica, Services

TOKEN = "stack-admin-token-0123456789"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def sofa_ids(small_catalog: Path) -> list[str]:
    """One sofa of each variant group: a search shows one product per group."""
    with open(small_catalog / "products.csv", newline="") as fh:
        groups = {row["item_group_id"] or row["id"]: row["id"] for row in reversed(list(csv.DictReader(fh)))
                  if row["category"] == "sofa"}
    return sorted(groups.values())


def vote(url: str, session: str, item_id: str, query: str = "sofa", kind: str = "like",
         network: int = 1) -> httpx.Response:
    """Search `query` as this session, from 127.0.`network`.1, then vote on `item_id` with that search's query_id."""
    transport = httpx.HTTPTransport(local_address=f"127.0.{network}.1")
    with httpx.Client(base_url=url, transport=transport, timeout=30, headers={"X-Session-ID": session}) as client:
        search = client.get("/api/v1/search/text", params={"q": query, "k": 20})
        assert search.status_code == 200, search.text
        return client.post("/api/v1/feedback", json={"query": query, "item_id": item_id, "vote": kind,
                                                      "query_id": search.json()["query_id"]})


def learned(url: str, query: str = "sofa") -> dict[str, int]:
    response = httpx.get(f"{url}/api/v1/feedback/learnt", params={"q": query}, headers=ADMIN, timeout=30)
    assert response.status_code == 200, response.text
    return {item["id"]: item["net_networks"] for item in response.json()["items"]}


def test_feedback_survives_a_restart_of_the_gateway(built_index: Path, tmp_path: Path, feedback_db_url: str,
                                                    sofa_ids: list[str]) -> None:
    settings = {"FEEDBACK_DB_URL": feedback_db_url, "LOOKALIKE_ADMIN_TOKEN": TOKEN}
    stack = Services(built_index, tmp_path)
    with stack.running(["similarity", "gateway"], env={"gateway": settings}, ready=("similarity",),
                       alive=("gateway",)):
        for network, session in enumerate(("shopper-one", "shopper-two", "shopper-three"), start=1):
            assert vote(stack.gateway, session, sofa_ids[0], network=network).status_code == 201
        assert vote(stack.gateway, "shopper-one", sofa_ids[1], kind="unlike").status_code == 201
        stack.stop("gateway")
        stack.start("gateway", env=settings)
        stack.wait_ready("gateway", path="/healthz")
        assert learned(stack.gateway) == {sofa_ids[0]: 3, sofa_ids[1]: -1}


def test_two_gateway_replicas_on_one_postgresql_share_what_they_learned(
        built_index: Path, tmp_path: Path, postgres: str, sofa_ids: list[str]) -> None:
    from tests.gateway.conftest import fresh_postgres_database

    settings = {"FEEDBACK_DB_URL": fresh_postgres_database(postgres), "LOOKALIKE_ADMIN_TOKEN": TOKEN,
                "FEEDBACK_PER_MINUTE": "4"}
    stack = Services(built_index, tmp_path)
    with stack.running(["similarity", "gateway"], replicas={"gateway_b": Replica("gateway")},
                       env={"gateway": settings, "gateway_b": settings}, ready=("similarity",),
                       alive=("gateway", "gateway_b")):
        a, b = stack.gateway, stack.url("gateway_b")
        assert vote(a, "shopper-one", sofa_ids[2], network=1).status_code == 201
        assert vote(b, "shopper-two", sofa_ids[2], network=2).status_code == 201
        assert learned(a) == learned(b) == {sofa_ids[2]: 2}
        # The rate limit is counted in the database, so taking turns between replicas doesn't get round it.
        statuses = [vote(url, "eager-client", sofa_ids[3], network=3).status_code for url in (a, b, a, b, a, b)]
        assert statuses == [201, 201, 201, 201, 429, 429]
        assert learned(b) == {sofa_ids[2]: 2, sofa_ids[3]: 1}  # four votes, one session: counted once
        forgotten = httpx.delete(f"{b}/api/v1/feedback", headers={"X-Session-ID": "eager-client"}, timeout=30)
        assert forgotten.json() == {"forgotten": 4}
        assert learned(a) == {sofa_ids[2]: 2}
