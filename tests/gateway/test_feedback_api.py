"""POST and DELETE /api/v1/feedback, in process: the gateway under TestClient, a real SQLite file,
and `httpx.MockTransport` playing the similarity service (which says which item ids exist).

The tests sign their searches' `query_id`s themselves, with the gateway's signing secret
(GATEWAY_SIGNING_SECRET), as the search routes would; TestClient's `client` sets the address
a vote comes from."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from gateway.feedback import Feedback
from gateway.feedback_store import FeedbackStore, engine_url
from gateway.query_ids import QueryIds, SearchKind
from gateway.schemas import Result
from gateway.upstream import Upstream
from tests.gateway.mock_services import SIMILARITY, gateways_over
from tests.gateway.mock_services import Gateways as Gateway
from tests.support import ClientResponse

ITEMS = {"sofa-1": "sofa", "sofa-2": "sofa", "chair-1": "chair"}
TOKEN = "a-long-random-admin-token"
SECRET = "a-signing-secret-every-replica-shares"
RECEIPTS = QueryIds(SECRET.encode(), lifetime_s=86400)


def similarity(request: httpx.Request) -> httpx.Response:
    item_id = request.url.path.removeprefix("/v1/items/")
    if item_id in ITEMS:
        return httpx.Response(200, json={"label": 0, "id": item_id, "category": ITEMS[item_id], "name": item_id,
                                         "file": f"{item_id}.jpg"})
    return httpx.Response(404, json={"error": {"code": "unknown_item", "message": "There is no catalogue item."}})


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    """Start gateways on one SQLite file under `tmp_path`; each call may change settings."""
    with gateways_over(similarity, tmp_path, signing_secret=SECRET) as start:
        yield start


def shown(session: str | None, kind: SearchKind = "words", items: list[str] | None = None, **issue: Any) -> str:
    """The `query_id` a search of this kind, made with this session, would have answered with."""
    return RECEIPTS.issue(kind, session, items if items is not None else list(ITEMS), **issue)


def vote(client: TestClient, session: str | None = "session-aaaa", **body: Any) -> ClientResponse:
    """A vote on a result of a search this session made (a words search, or a photo's when `query` is None)."""
    headers = {"X-Session-ID": session} if session else {}
    kind: SearchKind = "photo" if body.get("query", "") is None else "words"
    vote = {"query": "Couch", "item_id": "sofa-1", "vote": "like",
            "query_id": shown(session or client.cookies.get("lookalike_session"), kind), **body}
    return client.post("/api/v1/feedback", json=vote, headers=headers)


def learned(client: TestClient, query: str = "Couch") -> dict[str, int]:
    response = client.get("/api/v1/feedback/learned", params={"q": query}, headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200, response.text
    return {item["id"]: item["net_networks"] for item in response.json()["items"]}


def error_code(response: ClientResponse, status: int) -> str:
    assert response.status_code == status, response.text
    return response.json()["error"]["code"]


def test_a_vote_is_stored_under_the_normalised_query(gateway: Gateway) -> None:
    response = vote(gateway(), query="  Green COUCH!")
    assert response.status_code == 201, response.text
    assert response.json() == {"query": "green couch", "item_id": "sofa-1", "vote": "like"}


def test_a_photo_vote_is_stored_under_photo_and_needs_its_category(gateway: Gateway) -> None:
    client = gateway()
    assert vote(client, query=None, category="sofa").json()["query"] == "photo"
    assert "category" in vote(client, query=None).json()["error"]["message"]


@pytest.mark.parametrize("body, code", [
    ({"item_id": "wardrobe-9", "query_id": shown("session-aaaa", items=["wardrobe-9"])}, "not_in_catalog"),
    ({"vote": "love"}, "invalid_request"),
    ({"query": "?!"}, "invalid_request"),
    ({"item_id": ""}, "invalid_request"),
])
def test_an_unknown_item_or_a_bad_vote_is_a_422(gateway: Gateway, body: dict[str, Any], code: str) -> None:
    assert error_code(vote(gateway(), **body), 422) == code


def test_a_vote_names_the_search_that_showed_the_product_or_is_a_422(gateway: Gateway) -> None:
    client = gateway()
    assert vote(client, query_id=shown("session-aaaa", items=["sofa-2", "sofa-1"])).status_code == 201
    without = client.post("/api/v1/feedback", json={"query": "couch", "item_id": "sofa-1", "vote": "like"},
                          headers={"X-Session-ID": "session-aaaa"})
    assert error_code(without, 422) == "invalid_request" and "query_id" in without.text


def test_a_product_the_search_did_not_show_cannot_be_voted_on(gateway: Gateway) -> None:
    client = gateway()
    response = vote(client, item_id="chair-1", query_id=shown("session-aaaa", items=["sofa-1", "sofa-2"]))
    assert error_code(response, 422) == "item_not_shown"
    assert "did not show" in response.json()["error"]["message"]
    assert error_code(vote(client, query=None, category="chair", item_id="chair-1",
                           query_id=shown("session-aaaa", "photo", ["sofa-1"])), 422) == "item_not_shown"


@pytest.mark.parametrize("query_id", [
    "", "not-an-id", "A" * 2000, shown("session-aaaa")[:-3] + "AAA",  # malformed, too long, altered
    QueryIds(b"another-store", 86400).issue("words", "session-aaaa", list(ITEMS)),  # not this gateway's secret
    shown("session-bbbb"),  # another session's search
    shown(None),  # a search made without a session
    shown("session-aaaa", "similar"),  # "more like this" lists are not voted on
    shown("session-aaaa", "photo"),  # a words vote names a search by words
], ids=["empty", "malformed", "too-long", "altered", "another-secret", "another-session", "no-session",
        "more-like-this", "photo-search"])
def test_a_forged_foreign_or_mismatched_query_id_is_a_422(gateway: Gateway, query_id: str) -> None:
    response = vote(gateway(), query_id=query_id)
    assert error_code(response, 422) == "bad_query_id", response.text
    assert response.json()["error"]["message"]


def test_a_photo_vote_names_a_search_by_photo(gateway: Gateway) -> None:
    client = gateway()
    for kind in ("photo", "steered", "photo_words"):
        assert vote(client, query=None, category="sofa", query_id=shown("session-aaaa", kind)).status_code == 201
    assert error_code(vote(client, query=None, category="sofa", query_id=shown("session-aaaa", "words")),
                      422) == "bad_query_id"


def test_a_vote_naming_a_search_older_than_its_lifetime_is_a_410(gateway: Gateway) -> None:
    client = gateway(query_id_ttl_s=3600)
    response = vote(client, query_id=shown("session-aaaa", now=time.time() - 7200))
    assert error_code(response, 410) == "query_id_expired" and "search again" in response.json()["error"]["message"]
    assert vote(client, query_id=shown("session-aaaa", now=time.time() - 600)).status_code == 201


def test_twenty_sessions_from_one_address_count_as_one_network(gateway: Gateway) -> None:
    client = gateway(lookalike_admin_token=TOKEN, feedback_per_minute=100)
    for n in range(20):
        assert vote(client, session=f"sockpuppet-{n:02d}").status_code == 201
    assert learned(client) == {"sofa-1": 1}
    neighbour = gateway("127.0.0.77", lookalike_admin_token=TOKEN)  # the same /24
    assert vote(neighbour, session="neighbour-1", vote="unlike").status_code == 201
    assert learned(client) == {"sofa-1": 1}  # its sessions: 20 like, 1 unlike; the network likes it, once
    for address in ("127.0.1.1", "127.0.2.1"):
        assert vote(gateway(address), session=f"shopper-at-{address}").status_code == 201
    assert learned(client) == {"sofa-1": 3}


def test_a_vote_without_a_session_is_a_422_that_says_how_to_send_one(gateway: Gateway) -> None:
    response = vote(gateway(), session=None)
    assert error_code(response, 422) == "missing_session"
    assert "X-Session-ID" in response.json()["error"]["message"]
    assert error_code(vote(gateway(), session="short"), 422) == "missing_session"


def test_the_page_gives_a_random_http_only_session_cookie_that_votes_use(gateway: Gateway) -> None:
    client = gateway()
    first = client.get("/")
    cookie = first.headers["set-cookie"]
    assert cookie.startswith("lookalike_session=") and "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert "set-cookie" not in client.get("/").headers  # the cookie is kept, not replaced
    assert vote(client, session=None).status_code == 201
    other = gateway()
    other.get("/")
    assert other.cookies["lookalike_session"] != client.cookies["lookalike_session"]
    client.cookies.clear()
    client.cookies.set("lookalike_session", "bad")  # malformed: the page replaces it rather than refusing
    assert client.get("/").headers["set-cookie"].startswith("lookalike_session=")


def test_a_session_over_its_rate_gets_429_with_retry_after(gateway: Gateway) -> None:
    client = gateway(feedback_per_minute=3)
    for _ in range(3):
        assert vote(client).status_code == 201
    refused = vote(client)
    assert error_code(refused, 429) == "feedback_rate_limited"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert vote(client, session="another-session").status_code == 201


def test_a_session_at_its_cap_gets_429(gateway: Gateway) -> None:
    client = gateway(feedback_per_session=2)
    vote(client), vote(client)
    assert error_code(vote(client), 429) == "feedback_cap_reached"


def test_votes_survive_a_restart_of_the_gateway(gateway: Gateway) -> None:
    vote(gateway(), session="survivor-1")
    restarted = gateway(lookalike_admin_token=TOKEN)
    stats = restarted.get("/api/v1/feedback/stats", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert stats["votes"] == 1 and stats["sessions"] == 1 and stats["retention_days"] == 180


def test_a_shopper_forgets_their_own_session(gateway: Gateway) -> None:
    client = gateway()
    vote(client, session="forgetful-1"), vote(client, session="forgetful-1", item_id="sofa-2")
    mine = {"X-Session-ID": "forgetful-1"}
    assert client.delete("/api/v1/feedback", headers=mine).json() == {"forgotten": 2}
    assert client.delete("/api/v1/feedback", params={"session": "forgetful-1"}, headers=mine).json() == {"forgotten": 0}
    assert error_code(client.delete("/api/v1/feedback"), 422) == "missing_session"


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-token"}, {"Authorization": TOKEN}])
def test_admin_endpoints_refuse_a_missing_or_wrong_token_with_401(gateway: Gateway, headers: dict[str, str]) -> None:
    client = gateway(lookalike_admin_token=TOKEN)
    vote(client, session="someone-else")
    for response in (client.delete("/api/v1/feedback", params={"session": "someone-else"},
                                   headers={**headers, "X-Session-ID": "session-bbbb"}),
                     client.get("/api/v1/feedback/stats", headers=headers)):
        assert error_code(response, 401) == "admin_token_required"
        assert response.headers["www-authenticate"].startswith("Bearer")


def test_the_admin_token_forgets_another_session(gateway: Gateway) -> None:
    client = gateway(lookalike_admin_token=TOKEN)
    vote(client, session="someone-else")
    response = client.delete("/api/v1/feedback", params={"session": "someone-else"},
                             headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.json() == {"forgotten": 1}


def test_without_a_configured_token_admin_endpoints_say_how_to_set_one(gateway: Gateway) -> None:
    response = gateway().get("/api/v1/feedback/stats", headers={"Authorization": "Bearer anything"})
    assert error_code(response, 401) == "admin_token_required"
    assert "LOOKALIKE_ADMIN_TOKEN" in response.json()["error"]["message"]


@pytest.mark.parametrize("path", ["/api/v1/feedback/learned", "/api/v1/feedback/learnt"])
def test_what_the_votes_taught_is_at_learned_and_still_at_the_first_spelling(gateway: Gateway, path: str) -> None:
    client = gateway(lookalike_admin_token=TOKEN)
    vote(client, session="teacher-1", query="seat")
    response = client.get(path, params={"q": "seat"}, headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200 and [item["id"] for item in response.json()["items"]] == ["sofa-1"]
    assert response.json()["items"][0]["prior"] == 0  # one network alone moves nothing
    assert error_code(client.get(path, params={"q": "seat"}), 401) == "admin_token_required"


def test_the_openapi_page_declares_the_session_the_admin_token_and_one_spelling(gateway: Gateway) -> None:
    schema = gateway().get("/openapi.json").json()
    assert "/api/v1/feedback/learned" in schema["paths"] and "/api/v1/feedback/learnt" not in schema["paths"]
    admin = schema["components"]["securitySchemes"]["admin_token"]
    assert (admin["type"], admin["scheme"]) == ("http", "bearer") and "LOOKALIKE_ADMIN_TOKEN" in admin["description"]
    feedback = schema["paths"]["/api/v1/feedback"]
    for method in ("post", "delete"):
        assert {(p["in"], p["name"]) for p in feedback[method]["parameters"]} >= {
            ("header", "X-Session-ID"), ("cookie", "lookalike_session")}
    assert feedback["delete"]["security"] == [{"admin_token": []}, {}]  # the token only for another's session
    assert schema["paths"]["/api/v1/feedback/stats"]["get"]["security"] == [{"admin_token": []}]


def test_a_405_on_the_feedback_path_allows_both_methods_served_there(gateway: Gateway) -> None:
    response = gateway().put("/api/v1/feedback", headers={"X-Session-ID": "session-aaaa"})
    assert response.status_code == 405 and response.headers["allow"] == "DELETE, POST"


def test_a_vote_that_is_not_utf8_json_is_a_422(gateway: Gateway) -> None:
    response = gateway().post("/api/v1/feedback", content=b'{"query": "\xff\xfe", "item_id": "sofa-1"}',
                              headers={"X-Session-ID": "session-aaaa", "content-type": "application/json"})
    assert error_code(response, 422) == "invalid_request"


@pytest.fixture
async def feedback(tmp_path: Path) -> AsyncIterator[Feedback]:
    store = FeedbackStore(engine_url("", tmp_path))
    store.migrate()
    upstream = Upstream("similarity", SIMILARITY, 5.0, transport=httpx.MockTransport(similarity))
    yield Feedback(store, upstream, RECEIPTS, SECRET.encode(), weight=1.0, full_at=3)
    await upstream.aclose()
    store.dispose()


@pytest.mark.anyio
async def test_after_votes_from_three_sessions_a_term_the_text_lacks_returns_the_liked_items(
        feedback: Feedback) -> None:
    for session in ("shopper-one", "shopper-two", "shopper-three"):
        feedback.store.record(session, "seat", None, "chair-1", "like")
        feedback.store.record(session, "seat", None, "sofa-2", "unlike")
    feedback.store.record("shopper-one", "seat", None, "wardrobe-9", "like")  # since gone from the catalogue
    results = await feedback.rerank("Seat", [], k=10)
    assert [(r.id, r.category, r.learned) for r in results] == [("chair-1", "chair", True)]
    assert results[0].image_url == "/api/v1/items/chair-1/image" and 0 < results[0].score <= 1


@pytest.mark.anyio
async def test_items_liked_for_the_words_rise_among_the_text_results(feedback: Feedback) -> None:
    text = [Result(id=i, name=i, category=ITEMS[i], score=s, image_url="", group_id=i, photos=1, variants=1) for i, s in
            (("sofa-1", 0.9), ("sofa-2", 0.6))]
    for session in ("shopper-one", "shopper-two", "shopper-three"):
        feedback.store.record(session, "couch", None, "sofa-2", "like")
    results = await feedback.rerank("couch", text, k=10)
    assert [(r.id, r.learned) for r in results] == [("sofa-2", True), ("sofa-1", False)]
