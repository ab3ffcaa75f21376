"""The gateway's feedback job: who is voting, on what, and what the votes taught.

The session is anonymous: the `X-Session-ID` header an API client sends, or the random
`lookalike_session` cookie the gateway gives the page. Nothing about it is kept in the gateway:
votes go to the `FeedbackStore`, so any replica answers any request.

A vote counts only for what was shown, from whoever is really there:

- it names the `query_id` of a search made with the same session (`gateway.query_ids`), and a
  product that search returned (else 422 `item_not_shown`);
- the search must be of the vote's kind: a words vote (`query` set) a search that could carry
  words (`words`, `photo_words`, or `steered`, whose receipt does not say whether it had words),
  a photo vote (`query` null) a search by a photo (`photo`, `steered`, `photo_words`). "More like
  this" (`similar`) lists are not voted on. The receipt names no words, so the words of a vote
  are the shopper's own; what bounds them is that each network counts once (below);
- it is stored with the salted hash of the client's network (`gateway.clients.network_key`), and
  learning counts networks, not sessions, which cost nothing to make.
"""

from __future__ import annotations

import asyncio
import hmac
import re
import secrets
from urllib.parse import quote

import anyio
from fastapi import Request

from gateway.clients import Address, network_key
from gateway.feedback_store import PHOTO_QUERY, FeedbackStore
from gateway.learned import blend, learned_prior
from gateway.query_ids import QueryIds, SearchKind, purpose_key
from gateway.schemas import FeedbackStats, FeedbackStored, FeedbackVote, LearnedForQuery, LearnedItem, Result
from gateway.search import result_of
from gateway.upstream import Upstream
from lookalike.catalog.manifest import CatalogItem
from lookalike.contracts import Hit
from lookalike.errors import AdminTokenRequired, ApiError, BadQueryId, MissingSession, NotInCatalog, NotShown
from lookalike.text_query import normalise_query

SESSION_HEADER = "X-Session-ID"
SESSION_COOKIE = "lookalike_session"
SESSION_ID = re.compile(r"[A-Za-z0-9._~-]{8,128}")
WORDS_SEARCHES: frozenset[SearchKind] = frozenset({"words", "photo_words", "steered"})
PHOTO_SEARCHES: frozenset[SearchKind] = frozenset({"photo", "steered", "photo_words"})


def new_session_id() -> str:
    return secrets.token_urlsafe(24)


def has_session(request: Request) -> bool:
    """Whether the caller sent a usable session id (a malformed cookie is replaced, not refused)."""
    session = request.headers.get(SESSION_HEADER) or request.cookies.get(SESSION_COOKIE)
    return session is not None and SESSION_ID.fullmatch(session) is not None


def session_of(request: Request, required: bool = True) -> str | None:
    """The caller's session id, from the header, else the cookie; MissingSession when there is none."""
    session = request.headers.get(SESSION_HEADER) or request.cookies.get(SESSION_COOKIE)
    if session is not None and SESSION_ID.fullmatch(session):
        return session
    if session is None and not required:
        return None
    raise MissingSession(
        f"Feedback needs an anonymous session: send an {SESSION_HEADER} header of 8 to 128 letters, digits or "
        f"'-._~' (any random string), or load the page first, which sets the {SESSION_COOKIE} cookie.")


def require_admin(request: Request, token: str | None) -> None:
    """Bearer auth for operator endpoints, compared in constant time; refused when no token is configured."""
    challenge = {"WWW-Authenticate": 'Bearer realm="lookalike-admin"'}
    if not token:
        raise AdminTokenRequired(
            "Operator endpoints are off until the gateway has an admin token: set LOOKALIKE_ADMIN_TOKEN to a long "
            "random string, restart the gateway, and send `Authorization: Bearer <token>`.", headers=challenge)
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise AdminTokenRequired(
            "This needs the admin token: send `Authorization: Bearer <token>` with the value of the gateway's "
            "LOOKALIKE_ADMIN_TOKEN.", headers=challenge)


class Feedback:
    """Votes checked against the search that showed them and stored; the learned prior for a text query."""

    def __init__(self, store: FeedbackStore, similarity: Upstream, query_ids: QueryIds, secret: bytes,
                 weight: float = 1.0, full_at: int = 3, min_networks: int = 2) -> None:
        self.store = store
        self.similarity = similarity
        self.query_ids = query_ids
        self.network_salt = purpose_key(secret, "network")
        self.weight = weight
        self.full_at = full_at
        self.min_networks = min_networks

    def network_of(self, address: Address) -> str:
        """The key a vote from this address is counted under: its /24 or /64, salted and hashed."""
        return network_key(address, self.network_salt)

    async def check_item(self, item_id: str) -> None:
        """NotInCatalog (422) unless the serving index holds this product."""
        try:
            await self.similarity.request("GET", f"/v1/items/{quote(item_id, safe='')}")
        except ApiError as exc:
            if exc.status == 404:
                raise NotInCatalog(f"There is no catalogue product with the id {item_id!r}.") from None
            raise

    def check_shown(self, session: str, vote: FeedbackVote) -> int:
        """Where the search the vote names showed its product (from 1); refuses a vote that search does not back.

        BadQueryId: forged, malformed, another session's, made without a session, or of the wrong
        kind; QueryIdExpired: too old; NotShown: the search did not return this product.
        """
        receipt = self.query_ids.verify(vote.query_id, session)
        if not receipt.session_bound:
            raise BadQueryId(f"This query_id is of a search made without a session: send the same {SESSION_HEADER} "
                             "(or the page's cookie) with the search as with the vote.")
        words = vote.query is not None
        if receipt.kind not in (WORDS_SEARCHES if words else PHOTO_SEARCHES):
            wanted = "a search by words" if words else "a search by a photo"
            raise BadQueryId(f"A {'words' if words else 'photo'} vote names {wanted}; this query_id is of a "
                             f"{receipt.kind.replace('_', ' ')} search.")
        position = self.query_ids.position(receipt, vote.item_id)
        if position is None:
            raise NotShown(f"The search this query_id names did not show the product {vote.item_id!r}: a vote "
                           "counts only for a product its search returned.")
        return position

    async def vote(self, session: str, network: str, vote: FeedbackVote) -> FeedbackStored:
        self.check_shown(session, vote)
        await self.check_item(vote.item_id)  # it may have left the catalogue since the search
        await anyio.to_thread.run_sync(
            lambda: self.store.record(session, vote.query, vote.category, vote.item_id, vote.vote, network=network))
        stored = PHOTO_QUERY if vote.query is None else normalise_query(vote.query)
        return FeedbackStored(query=stored, item_id=vote.item_id, vote=vote.vote)

    async def forget(self, session: str) -> int:
        return await anyio.to_thread.run_sync(self.store.forget, session)

    async def prune(self) -> int:
        return await anyio.to_thread.run_sync(self.store.prune)

    async def stats(self) -> FeedbackStats:
        counts = await anyio.to_thread.run_sync(self.store.stats)
        return FeedbackStats(votes=int(counts["votes"] or 0), sessions=int(counts["sessions"] or 0),
                             oldest=counts["oldest"], retention_days=self.store.limits.retention_s / 86400)

    async def learned(self, query: str) -> dict[str, float]:
        """Item id -> bounded prior for these words: the hook a text search blends into its ranking (`learned.blend`)."""
        net = await anyio.to_thread.run_sync(self.store.net_votes, query)
        return learned_prior(net, self.weight, self.full_at, self.min_networks)

    async def learned_for(self, query: str) -> LearnedForQuery:
        """The operator's view of what shoppers taught these words."""
        net = await anyio.to_thread.run_sync(self.store.net_votes, query)
        prior = learned_prior(net, self.weight, self.full_at, self.min_networks)
        items = [LearnedItem(id=item, net_networks=n, prior=prior.get(item, 0.0)) for item, n in net.items()]
        return LearnedForQuery(query=normalise_query(query), items=sorted(items, key=lambda i: (-i.prior, i.id)))

    async def rerank(self, query: str, text_results: list[Result], k: int) -> list[Result]:
        """Text results (score 0..1, best first) with what shoppers taught these words blended in (`learned.blend`).

        The hook for the text search: items only the votes found are fetched from the similarity
        service; one that has left the catalogue since is dropped.
        """
        ranked = blend([(r.id, r.score) for r in text_results], await self.learned(query), k, self.weight)
        known = {r.id: r for r in text_results}
        missing = [b.id for b in ranked if b.id not in known]
        for item_id, found in zip(missing, await asyncio.gather(*(self._catalog_item(i) for i in missing))):
            if found is not None:
                known[item_id] = result_of(Hit(id=found.id, name=found.name, category=found.category, score=0.0,
                                               extra=found.extra, group_id=found.group))
        return [known[b.id].model_copy(update={"score": b.score, "learned": b.learned}) for b in ranked if b.id in known]

    async def _catalog_item(self, item_id: str) -> CatalogItem | None:
        try:
            return await self.similarity.model("GET", f"/v1/items/{quote(item_id, safe='')}", CatalogItem)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
