"""Search analytics, in process: the gateway under TestClient over a real database (SQLite file, PostgreSQL),
with `httpx.MockTransport` playing both services so each search's category and best score are the test's.

A test photo's bytes say what the fake classifier decides and the fake similarity service scores:
`b"chair:0.9"` is decided `chair` (probability 0.8), and its best match scores 0.9.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import numpy as np
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from gateway.analytics import Analytics, SessionHashes
from gateway.feedback_store import FeedbackStore, engine_url, search_events, search_log
from gateway.search_log import DAY_S, SearchLog
from lookalike.contracts import decode_embedding, encode_embedding
from tests.gateway.mock_services import Gateways as Gateway
from tests.gateway.mock_services import gateways_over
from tests.support import ClientResponse

TOKEN = "a-long-random-admin-token"
STAFF = {"Authorization": f"Bearer {TOKEN}"}
CATEGORIES = ("chair", "lamp", "sofa")


def hits(category: str, best: float, n: int = 3) -> list[dict[str, Any]]:
    return [{"id": f"{category}-{i}", "name": f"{category} {i}", "category": category, "score": best - i / 100}
            for i in range(1, n + 1)]


def fake_services(request: httpx.Request) -> httpx.Response:
    path = request.url.path
    if path == "/v1/classify":
        category, best = request.content.decode().split(":")
        probabilities = {c: 0.8 if c == category else 0.1 for c in CATEGORIES}
        return httpx.Response(200, json={
            "category": category, "confidence": 0.8, "probabilities": probabilities,
            "embedding": encode_embedding(np.full(4, float(best), dtype=np.float32)),
            "model": {"weights": "random", "model_id": "m"}, "index_version": "v1", "timings_ms": {}})
    if path == "/v1/search":
        asked = json.loads(request.content)
        score = float(decode_embedding(asked["embedding"])[0])
        found = [] if asked.get("q") == "unicorn" else hits(asked["category"], score)
        return httpx.Response(200, json={"category": asked["category"], "hits": found, "index_version": "v1"})
    if path == "/v1/search/text":
        words = request.url.params["q"].lower()
        found = [] if "unicorn" in words or "zebra" in words else hits("sofa", 0.5)
        return httpx.Response(200, json={"query": words, "category": None, "hits": found, "index_version": "v1"})
    if path.endswith("/similar"):
        return httpx.Response(200, json={"category": "lamp", "hits": hits("lamp", 0.7), "index_version": "v1"})
    if path == "/v1/columns":
        return httpx.Response(200, json={"columns": [{"name": "price", "kind": "number", "products": 3}],
                                         "index_version": "v1"})
    return httpx.Response(404, json={"error": {"code": "not_found", "message": path}})


@pytest.fixture
def gateway(feedback_db_url: str, tmp_path: Path) -> Iterator[Gateway]:
    """Start gateways on one database; each call may change settings."""
    with gateways_over(fake_services, tmp_path, feedback_db_url=feedback_db_url, lookalike_admin_token=TOKEN) as start:
        yield start


def photo_search(client: TestClient, photo: str, headers: dict[str, str] | None = None, **params: Any) -> Any:
    answer = client.post("/api/v1/search", params=params, files={"image": ("a.jpg", photo.encode(), "image/jpeg")},
                         headers=headers or {})
    assert answer.status_code == 200, answer.text
    return answer.json()


def words_search(client: TestClient, q: str, **params: Any) -> Any:
    answer = client.get("/api/v1/search/text", params={"q": q, **params})
    assert answer.status_code == 200, answer.text
    return answer.json()


def written(client: TestClient) -> None:
    """Wait until the writer task has written (or dropped) everything queued so far."""
    analytics: Analytics = client.app.state.analytics  # type: ignore[attr-defined]
    client.portal.call(analytics.drained)


def staff(client: TestClient, report: str, **params: Any) -> Any:
    written(client)
    answer = client.get(f"/api/v1/staff/{report}", params=params, headers=STAFF)
    assert answer.status_code == 200, answer.text
    return answer.json()


def rows(client: TestClient, table: sa.Table) -> list[dict[str, Any]]:
    written(client)
    engine = client.app.state.analytics.store.engine  # type: ignore[attr-defined]
    with engine.connect() as connection:
        return [dict(row) for row in connection.execute(sa.select(table)).mappings()]


def click(client: TestClient, answer: dict[str, Any], position: int = 1, kind: str = "click",
          **options: Any) -> ClientResponse:
    product = answer["results"][position - 1]["id"]
    body = {"type": kind, "query_id": answer["query_id"], "product": product, "position": position}
    return client.post("/api/v1/events", json=body, **options)


def test_after_a_seeded_set_of_searches_the_staff_reports_say_exactly_what_happened(gateway: Gateway) -> None:
    client = gateway()
    chairs = [photo_search(client, "chair:0.9") for _ in range(7)]
    photo_search(client, "chair:0.2")  # a chair photo that matched weakly: something the store doesn't sell
    handle = photo_search(client, "lamp:0.8")["photo"]
    steered = client.post("/api/v1/search", params={"photo": handle, "category": "sofa"})  # the shopper disagrees
    assert steered.status_code == 200
    photo_search(client, "chair:0.9", q="unicorn")  # photo and words, nothing found
    for q in ("Unicorn", "unicorn!", "zebra"):
        words_search(client, q)
    sofas = words_search(client, "green sofa")
    words_search(client, "velvet")
    assert client.get("/api/v1/items/lamp-1/similar").status_code == 200

    for answer in chairs[:3]:
        assert click(client, answer, position=2).status_code == 202
    assert click(client, sofas, position=1).status_code == 202
    assert click(client, sofas, position=1, kind="purchase").status_code == 202

    overview = staff(client, "overview", days=7)
    by_kind = {row["kind"]: row["searches"] for row in overview["per_day"]}
    assert by_kind == {"photo": 9, "steered": 1, "photo_words": 1, "words": 5, "similar": 1}
    assert overview["searches"] == 17
    assert overview["no_result_share"] == pytest.approx(4 / 17)
    assert overview["clicks"] == 4 and overview["purchases"] == 1 and overview["add_to_cart"] == 0
    assert overview["click_through_rate"] == pytest.approx(4 / 17)
    assert overview["mean_click_position"] == pytest.approx((2 * 3 + 1) / 4)
    assert overview["conversion_rate"] == pytest.approx(1 / 17)
    assert sum(day["searches"] for day in overview["latency"]) == 17

    unmet = staff(client, "unmet", days=7)
    assert unmet["no_results"] == [{"words": "unicorn", "searches": 3}, {"words": "zebra", "searches": 1}]
    assert unmet["no_clicks"] == [{"words": "velvet", "searches": 1}]
    assert unmet["switches"] == [{"decided": "lamp", "chosen": "sofa", "searches": 1}]
    weak = {row["category"]: row for row in unmet["weak_photos"]}
    assert weak["chair"]["photo_searches"] == 8 and weak["chair"]["below"] == 1
    assert sum(b["searches"] for b in unmet["best_scores"]) == 10  # every photo kind with a result


def test_sec_gpc_searches_count_but_link_to_no_session(gateway: Gateway) -> None:
    client = gateway()
    session = {"X-Session-ID": "shopper-session-1"}
    photo_search(client, "chair:0.9", headers=session)
    photo_search(client, "chair:0.9", headers={**session, "Sec-GPC": "1"})
    logged = rows(client, search_log)
    assert len(logged) == 2
    linked = [row["session"] for row in logged if row["session"] is not None]
    assert len(linked) == 1 and "shopper-session-1" not in linked[0]
    assert staff(client, "overview")["searches"] == 2


def test_nothing_of_the_photo_or_the_client_is_kept(gateway: Gateway) -> None:
    client = gateway()
    photo_search(client, "chair:0.9", headers={"X-Session-ID": "shopper-session-1"}, where="price<=300")
    (row,) = rows(client, search_log)
    assert set(row) == {"id", "search_id", "created_at", "day", "kind", "session", "category", "confidence", "chosen",
                        "best_score", "results", "words", "filters", "latency_ms", "index_version"}
    assert row["filters"] == '["price<=300"]' and row["category"] == "chair" and row["results"] == 3


def test_a_search_asked_to_stay_out_or_a_gateway_with_analytics_off_logs_nothing(gateway: Gateway) -> None:
    client = gateway()
    photo_search(client, "chair:0.9", analytics="false")
    assert rows(client, search_log) == []
    off = gateway(analytics=False)
    answer = photo_search(off, "chair:0.9")
    assert answer["query_id"]
    accepted = click(off, answer)
    assert accepted.status_code == 202 and accepted.json() == {"accepted": False}
    assert rows(off, search_log) == [] and rows(off, search_events) == []


def test_a_beacon_click_sent_as_text_plain_is_stored_with_its_position(gateway: Gateway) -> None:
    client = gateway()
    answer = words_search(client, "green sofa")
    body = json.dumps({"type": "click", "query_id": answer["query_id"], "product": answer["results"][2]["id"]})
    assert client.post("/api/v1/events", content=body, headers={"Content-Type": "text/plain;charset=UTF-8"}
                       ).status_code == 202
    (event,) = rows(client, search_events)
    (search,) = rows(client, search_log)
    assert (event["type"], event["product"], event["position"]) == ("click", answer["results"][2]["id"], 3)
    assert event["search_id"] == search["search_id"]


@pytest.mark.parametrize("feedback_db_url", ["sqlite"], indirect=True)  # checked before the database
@pytest.mark.parametrize("change, status, code", [
    ({"type": "like"}, 422, "bad_event"),
    ({"product": None}, 422, "bad_event"),
    ({"position": 0}, 422, "bad_event"),
    ({"query_id": "not-a-query-id"}, 422, "bad_query_id"),
    ({"product": "wardrobe-9"}, 422, "item_not_shown"),
    ({"position": 3}, 422, "item_not_shown"),
    ({"extra": "x" * 5000}, 413, "event_too_large"),
])
def test_a_bad_event_gets_a_4xx_that_says_what_is_wrong(
        gateway: Gateway, change: dict[str, Any], status: int, code: str) -> None:
    client = gateway()
    answer = words_search(client, "green sofa")
    body = {"type": "click", "query_id": answer["query_id"], "product": answer["results"][0]["id"], "position": 1,
            **change}
    refused = client.post("/api/v1/events", json=body)
    assert refused.status_code == status and refused.json()["error"]["code"] == code, refused.text
    assert rows(client, search_events) == []


@pytest.mark.parametrize("feedback_db_url", ["sqlite"], indirect=True)  # checked before the database
def test_an_event_that_is_not_json_is_refused(gateway: Gateway) -> None:
    client = gateway()
    assert client.post("/api/v1/events", content=b"{not json", headers={"Content-Type": "application/json"}
                       ).json()["error"]["code"] == "bad_event"
    assert client.post("/api/v1/events", content=b"<a/>", headers={"Content-Type": "application/xml"}
                       ).status_code == 415


@pytest.mark.parametrize("feedback_db_url", ["sqlite"], indirect=True)  # checked before the database
@pytest.mark.parametrize("report", ["overview", "unmet", "catalogue"])
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-token"}, {"Authorization": TOKEN}])
def test_a_staff_endpoint_needs_the_admin_token(gateway: Gateway, report: str, headers: dict[str, str]) -> None:
    refused = gateway().get(f"/api/v1/staff/{report}", headers=headers)
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "admin_token_required"


def test_pruning_removes_rows_older_than_the_retention(feedback_db_url: str) -> None:
    store = FeedbackStore(engine_url(feedback_db_url, Path()))
    store.migrate()
    log = SearchLog(store.engine, retention_s=90 * DAY_S)
    now = 1_800_000_000.0
    row = {"search_id": "0" * 16, "day": "2027-01-15", "kind": "words", "session": None, "category": None,
           "confidence": None, "chosen": None, "best_score": None, "results": 0, "words": "x", "filters": None,
           "latency_ms": 1.0, "index_version": "v1"}
    old, recent = now - 91 * DAY_S, now - 89 * DAY_S
    log.write([{**row, "created_at": old}, {**row, "created_at": recent}],
              [{"search_id": "0" * 16, "created_at": t, "type": "click", "product": "p", "position": 1}
               for t in (old, recent)])
    assert log.prune(now=now) == 2
    with store.engine.connect() as connection:
        assert connection.execute(sa.select(search_log.c.created_at)).scalars().all() == [recent]
        assert connection.execute(sa.select(search_events.c.created_at)).scalars().all() == [recent]
    store.dispose()


@pytest.mark.parametrize("feedback_db_url", ["sqlite"], indirect=True)  # checked before the database
def test_the_writer_stopping_fails_readiness_loudly(gateway: Gateway, caplog: pytest.LogCaptureFixture) -> None:
    client = gateway()
    analytics: Analytics = client.app.state.analytics  # type: ignore[attr-defined]

    async def kill_writer() -> None:
        assert analytics._writer is not None
        analytics._writer.cancel()
        await anyio.sleep(0)
        await anyio.sleep(0)

    client.portal.call(kill_writer)
    answer = client.get("/readyz")
    assert answer.status_code == 503 and "analytics writer" in answer.json()["reason"]
    assert "analytics writer" in caplog.text


def test_a_session_hash_holds_for_a_day_and_changes_with_the_next() -> None:
    """The daily salt: one day's rows can't be joined to another's, nor the hash turned back into the id."""
    hashed = SessionHashes(b"s" * 32)
    today = hashed("shopper-session-1", "2027-01-15")
    assert today == hashed("shopper-session-1", "2027-01-15") != hashed("shopper-session-2", "2027-01-15")
    assert hashed("shopper-session-1", "2027-01-16") != today
    assert "shopper" not in today and len(today) == 32
