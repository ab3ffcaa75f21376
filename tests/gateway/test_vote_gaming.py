"""Gaming the learned ranking, tried as an attacker would: real gateway and similarity processes on loopback.

Sessions cost nothing (any random string), so they are what an attacker multiplies. Each client here
is bound to its own loopback address (all of 127.0.0.0/8 is the loopback interface on Linux), so the
gateway sees them as different machines: 127.0.0.1 and 127.0.0.9 share a /24, one network; 127.0.N.1
for N = 1, 2, 3 are three networks.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import Services

TOKEN = "gaming-admin-token-0123456789"
WORDS = "bed"  # five beds in the small catalogue, scoring 0.73 to 0.87: a near tie that any prior would reorder


@pytest.fixture(scope="module")
def stack(built_index: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    """Similarity and gateway only: text searches and votes need no classifier."""
    settings = {"LOOKALIKE_ADMIN_TOKEN": TOKEN, "GATEWAY_FEEDBACK_PER_MINUTE": "100"}
    with Services(built_index, tmp_path_factory.mktemp("gaming-logs")).running(
            ["similarity", "gateway"], env={"gateway": settings}, ready=("similarity",), alive=("gateway",)) as services:
        yield services


@contextmanager
def client_at(stack: Services, address: str) -> Iterator[httpx.Client]:
    """An HTTP client whose connections leave from `address`."""
    with httpx.Client(base_url=stack.gateway, transport=httpx.HTTPTransport(local_address=address),
                      timeout=30) as client:
        yield client


def search(client: httpx.Client, session: str) -> dict[str, Any]:
    response = client.get("/api/v1/search/text", params={"q": WORDS, "k": 10}, headers={"X-Session-ID": session})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def like(client: httpx.Client, session: str, item_id: str, query_id: str) -> httpx.Response:
    return client.post("/api/v1/feedback", headers={"X-Session-ID": session},
                       json={"query": WORDS, "item_id": item_id, "vote": "like", "query_id": query_id})


def ranking(stack: Services) -> list[str]:
    with client_at(stack, "127.0.0.200") as client:
        return [r["id"] for r in search(client, "onlooker-1")["results"]]


def learned(stack: Services) -> dict[str, int]:
    response = httpx.get(f"{stack.gateway}/api/v1/feedback/learned", params={"q": WORDS},
                         headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    assert response.status_code == 200, response.text
    return {item["id"]: item["net_networks"] for item in response.json()["items"]}


def test_a_product_never_shown_cannot_be_voted_up_at_all(stack: Services, small_catalog: Path) -> None:
    before = ranking(stack)
    with open(small_catalog / "products.csv", newline="") as fh:
        lamp = next(row["id"] for row in csv.DictReader(fh) if row["category"] == "lamp")
    assert lamp not in before
    for n in range(3):
        with client_at(stack, f"127.0.{n + 1}.1") as client:
            session = f"lamp-pusher-{n}"
            shown = search(client, session)
            refused = like(client, session, lamp, shown["query_id"])
            assert refused.status_code == 422 and refused.json()["error"]["code"] == "item_not_shown"
            forged = like(client, session, lamp, shown["query_id"][:-6] + "AAAAAA")
            assert forged.status_code == 422 and forged.json()["error"]["code"] == "bad_query_id"
            borrowed = like(client, "someone-else", before[0], shown["query_id"])  # another session's search
            assert borrowed.status_code == 422 and borrowed.json()["error"]["code"] == "bad_query_id"
    assert lamp not in learned(stack)
    assert ranking(stack) == before


def test_twenty_sessions_from_one_address_cannot_move_a_product_to_first_place(stack: Services) -> None:
    before = ranking(stack)
    assert len(before) >= 2
    target = before[-1]

    with client_at(stack, "127.0.0.1") as attacker:
        for n in range(20):
            session = f"sockpuppet-{n:02d}"
            assert like(attacker, session, target, search(attacker, session)["query_id"]).status_code == 201
    with client_at(stack, "127.0.0.9") as neighbour:  # another address in the same /24
        assert like(neighbour, "sockpuppet-21", target, search(neighbour, "sockpuppet-21")["query_id"]
                    ).status_code == 201
    assert learned(stack)[target] == 1
    assert ranking(stack) == before  # one network moves nothing, not even within a near tie

    # Shoppers on other networks agreeing is what the learning is for: then it does move.
    with client_at(stack, "127.0.1.1") as shopper:
        assert like(shopper, "real-shopper-1", target, search(shopper, "real-shopper-1")["query_id"]).status_code == 201
    assert learned(stack)[target] == 2
    assert ranking(stack)[0] == target
