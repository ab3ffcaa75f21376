"""Search receipts: a `query_id` that proves what one search showed, to which session, and when.

Every search answer carries a `query_id`. A vote or an analytics event names it, and the gateway
accepts only what that search really returned: the id is signed (HMAC-SHA256 under the gateway's
signing secret, shared by every replica), so any replica checks it without keeping state.

An id is URL-safe base64 of a small binary record and its MAC:

    version (1) | issued, unix s (4) | search id (8) | kind (1) | session tag (8) | item tags (6 each) | MAC (16)

The item tags are MACs of each returned product id, in rank order, so an id shows neither the
products nor the session, and position `n` of a product is where its tag stands. The search id is
the key the search log (analytics) is joined on.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import struct
import time
from dataclasses import dataclass
from typing import Literal, get_args

from lookalike.errors import BadQueryId, QueryIdExpired

SearchKind = Literal["photo", "steered", "words", "photo_words", "similar"]
KINDS: tuple[SearchKind, ...] = get_args(SearchKind)
FORMAT = 1
HEAD = struct.Struct(">BI8sB8s")
ITEM_TAG_BYTES = 6
MAC_BYTES = 16
NO_SESSION = bytes(8)
MAX_QUERY_ID_CHARS = 1200
"""Longest id this gateway issues (100 results): a longer one is refused before it is decoded."""


def purpose_key(secret: bytes, purpose: str) -> bytes:
    """A key for one use of the signing secret, so a MAC made for one use never verifies for another."""
    return hmac.new(secret, purpose.encode(), hashlib.sha256).digest()


@dataclass(frozen=True)
class Receipt:
    """What a verified `query_id` says about its search."""

    search_id: str = ""
    kind: SearchKind = "photo"
    issued_at: int = 0
    item_tags: tuple[bytes, ...] = ()
    session_bound: bool = False


class QueryIds:
    """Issues and verifies `query_id`s; `lifetime_s` bounds how long a vote or event may name one."""

    def __init__(self, secret: bytes, lifetime_s: float) -> None:
        self._key = purpose_key(secret, "query-id")
        self.lifetime_s = lifetime_s

    def issue(self, kind: SearchKind, session: str | None, item_ids: list[str], now: float | None = None) -> str:
        search_id = secrets.token_bytes(8)
        head = HEAD.pack(FORMAT, int(time.time() if now is None else now), search_id, KINDS.index(kind),
                         self._session_tag(session))
        body = head + b"".join(self._item_tag(search_id, item) for item in item_ids)
        return base64.urlsafe_b64encode(body + self._mac(body)).rstrip(b"=").decode()

    def verify(self, query_id: str, session: str | None = None, *, check_session: bool = True,
               now: float | None = None) -> Receipt:
        """The receipt of a `query_id` this gateway issued; BadQueryId for a forged, malformed or (with
        `check_session`) another session's id, QueryIdExpired for one older than its lifetime."""
        raw = self._decode(query_id)
        body, mac = raw[:-MAC_BYTES], raw[-MAC_BYTES:]
        if not hmac.compare_digest(mac, self._mac(body)):
            raise BadQueryId("This query_id was not issued by this store's search: send the `query_id` of the "
                             "search answer that showed the product.")
        version, issued, search_id, kind, session_tag = HEAD.unpack_from(body)
        if version != FORMAT or kind >= len(KINDS):
            raise BadQueryId("This query_id is of a format this gateway no longer reads: search again.")
        now = time.time() if now is None else now
        if now - issued > self.lifetime_s:
            raise QueryIdExpired(f"This search is older than {self.lifetime_s / 3600:g} hours: search again, then "
                                 "send the new answer's `query_id`.")
        bound = session_tag != NO_SESSION
        if check_session and bound and not hmac.compare_digest(session_tag, self._session_tag(session)):
            raise BadQueryId("This query_id belongs to another session's search: send the `query_id` of a search "
                             "made with this session.")
        tags = body[HEAD.size:]
        return Receipt(search_id.hex(), KINDS[kind], issued,
                       tuple(tags[i:i + ITEM_TAG_BYTES] for i in range(0, len(tags), ITEM_TAG_BYTES)), bound)

    def position(self, receipt: Receipt, item_id: str) -> int | None:
        """Where the search showed this product, counted from 1; None if it did not show it."""
        tag = self._item_tag(bytes.fromhex(receipt.search_id), item_id)
        for n, shown in enumerate(receipt.item_tags, start=1):
            if hmac.compare_digest(shown, tag):
                return n
        return None

    def _decode(self, query_id: str) -> bytes:
        malformed = BadQueryId("`query_id` is not an id this API hands out: send the `query_id` field of a "
                               "search answer, unchanged.")
        if not query_id or len(query_id) > MAX_QUERY_ID_CHARS:
            raise malformed
        try:
            raw = base64.urlsafe_b64decode(query_id + "=" * (-len(query_id) % 4))
        except (binascii.Error, ValueError):
            raise malformed from None
        if len(raw) < HEAD.size + MAC_BYTES or (len(raw) - HEAD.size - MAC_BYTES) % ITEM_TAG_BYTES:
            raise malformed
        return raw

    def _mac(self, body: bytes) -> bytes:
        return hmac.new(self._key, body, hashlib.sha256).digest()[:MAC_BYTES]

    def _session_tag(self, session: str | None) -> bytes:
        if not session:
            return NO_SESSION
        return hmac.new(self._key, b"session:" + session.encode(), hashlib.sha256).digest()[:8]

    def _item_tag(self, search_id: bytes, item_id: str) -> bytes:
        return hmac.new(self._key, search_id + item_id.encode(), hashlib.sha256).digest()[:ITEM_TAG_BYTES]
