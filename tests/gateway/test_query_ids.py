"""A search's `query_id`: a signed receipt of what it showed, to whom, and when."""

import pytest

from gateway.query_ids import QueryIds
from lookalike.errors import BadQueryId, QueryIdExpired

SHOWN = ["lamp-1", "lamp-7", "lamp-3"]


@pytest.fixture
def ids() -> QueryIds:
    return QueryIds(b"s" * 32, lifetime_s=3600)


def test_a_receipt_knows_what_its_search_showed_and_where(ids: QueryIds) -> None:
    receipt = ids.verify(ids.issue("photo", "session-1", SHOWN, now=1000), "session-1", now=1060)
    assert receipt.kind == "photo" and receipt.issued_at == 1000 and receipt.session_bound
    assert [ids.position(receipt, item) for item in SHOWN] == [1, 2, 3]
    assert ids.position(receipt, "lamp-2") is None


def test_each_search_gets_its_own_id(ids: QueryIds) -> None:
    first, second = (ids.verify(ids.issue("words", None, SHOWN)) for _ in range(2))
    assert first.search_id != second.search_id and len(first.search_id) == 16


def test_a_forged_or_altered_id_is_refused(ids: QueryIds) -> None:
    issued = ids.issue("photo", "session-1", SHOWN)
    other_store = QueryIds(b"t" * 32, lifetime_s=3600).issue("photo", "session-1", SHOWN)
    flipped = issued[:-3] + ("A" if issued[-3] != "A" else "B") + issued[-2:]
    for forged in (other_store, flipped, "not-a-query-id", "", "A" * 5000):
        with pytest.raises(BadQueryId):
            ids.verify(forged, "session-1")


def test_another_sessions_id_is_refused_unless_the_caller_waives_the_check(ids: QueryIds) -> None:
    issued = ids.issue("photo", "session-1", SHOWN)
    with pytest.raises(BadQueryId, match="another session"):
        ids.verify(issued, "session-2")
    assert ids.verify(issued, None, check_session=False).item_tags


def test_a_search_made_without_a_session_can_be_named_by_any(ids: QueryIds) -> None:
    assert not ids.verify(ids.issue("similar", None, SHOWN), "session-9").session_bound


def test_an_id_older_than_its_lifetime_is_expired(ids: QueryIds) -> None:
    issued = ids.issue("photo", None, SHOWN, now=1000)
    with pytest.raises(QueryIdExpired):
        ids.verify(issued, now=1000 + 3601)


def test_a_hundred_results_fit_the_longest_id_accepted(ids: QueryIds) -> None:
    many = [f"product-{n}" for n in range(100)]
    receipt = ids.verify(ids.issue("words", "session-1", many), "session-1")
    assert ids.position(receipt, "product-99") == 100
