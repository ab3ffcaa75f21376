"""Fair shares: one client's script can't crowd out every shopper.

Each kind of request (searches, votes, events) has a token bucket per client, keyed by
`limit_key(client_address(request))`: the IPv4 address, or the IPv6 /64, after trusted proxies.
A bucket holds up to `burst` tokens and refills at `per_minute`; a request takes one, and a
client with none left gets 429 `rate_limited` with `Retry-After` (the seconds until its next
token). A shopper clicking, steering and voting never empties a bucket; a script does, within
seconds. Memory is bounded: each kind tracks at most `max_clients` buckets and forgets the least
recently seen first, which costs nothing, since an idle bucket refills to full anyway.

Routes take a limit with one line: `@router.post(..., dependencies=[limited("events")])`.

Written here rather than taken from a library: PyPI's `limits` counts windows (fixed, moving,
sliding), not token buckets, and its in-memory storage bounds its keys only by their expiry;
`pyrate-limiter` keeps a log of every hit per bucket. A bucket here is two floats per client.
"""

from __future__ import annotations

import hmac
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import Depends, Request
from prometheus_client import Counter

from gateway.clients import client_address, limit_key
from lookalike.errors import RateLimited
from lookalike.observability import Metrics

Kind = Literal["searches", "votes", "events"]


@dataclass(frozen=True)
class Share:
    """What one client may send of one kind: `burst` at once, then `per_minute`; 0 per minute is no limit."""

    per_minute: float
    burst: int


class TokenBuckets:
    """One token bucket per client key, at most `max_clients` of them (least recently seen forgotten first).

    Called on the event loop only, so it needs no lock.
    """

    def __init__(self, share: Share, max_clients: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = share.per_minute / 60
        self.burst = float(max(1, share.burst))
        self.max_clients = max_clients
        self.clock = clock
        self._buckets: OrderedDict[str, list[float]] = OrderedDict()  # key -> [tokens, when last counted]

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str) -> float:
        """Take a token for `key`: 0 if there was one, else the seconds until there is."""
        now = self.clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_clients:
                self._buckets.popitem(last=False)
            bucket = self._buckets[key] = [self.burst, now]
        else:
            self._buckets.move_to_end(key)
            bucket[0] = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
            bucket[1] = now
        if bucket[0] >= 1:
            bucket[0] -= 1
            return 0.0
        return (1 - bucket[0]) / self.rate


class FairShares:
    """The buckets of every limited kind, and the count of refusals on /metrics."""

    def __init__(self, shares: dict[Kind, Share], max_clients: int, metrics: Metrics,
                 clock: Callable[[], float] = time.monotonic, operator_token: str | None = None) -> None:
        self.operator_token = operator_token
        self.buckets = {kind: TokenBuckets(share, max_clients, clock)
                        for kind, share in shares.items() if share.per_minute > 0}
        self.refused = Counter("rate_limited_total", "Requests refused with 429 because their client had used its "
                               "fair share, by kind: searches, votes, events.", ["kind"], registry=metrics.registry)
        metrics.labelled_gauge("rate_limited_clients", "Clients whose buckets are tracked, by kind (bounded by "
                               "GATEWAY_RATE_LIMIT_MAX_CLIENTS).", "kind",
                               lambda: {kind: float(len(b)) for kind, b in self.buckets.items()})

    def is_operator(self, request: Request) -> bool:
        """The request carries LOOKALIKE_ADMIN_TOKEN as a bearer token (compared in constant time)."""
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        return (self.operator_token is not None and scheme.lower() == "bearer"
                and hmac.compare_digest(given.strip().encode(), self.operator_token.encode()))

    def take(self, kind: Kind, request: Request, operator_exempt: bool = False) -> None:
        """RateLimited (429, with Retry-After) when this request's client has used its share of `kind`;
        `operator_exempt`: a request with the operator token (a store's own server) has no share to use."""
        buckets = self.buckets.get(kind)
        if buckets is None or (operator_exempt and self.is_operator(request)):
            return
        wait = buckets.take(limit_key(client_address(request)))
        if wait:
            self.refused.labels(kind).inc()
            seconds = max(1, math.ceil(wait))
            raise RateLimited(f"Too many {kind} from your address. Please wait {seconds} s and try again.",
                              headers={"Retry-After": str(seconds)})


def limited(kind: Kind, operator_exempt: bool = False) -> Any:
    """The route dependency that spends one of the client's `kind` tokens: `dependencies=[limited("events")]`.

    `operator_exempt`: requests with the operator token spend none, e.g. the add-to-cart and purchase
    events a store's own server sends for all its shoppers from one address.
    """

    async def fair_share(request: Request) -> None:
        shares: FairShares = request.app.state.fair_shares
        shares.take(kind, request, operator_exempt)

    fair_share.__name__ = f"fair_share_{kind}"
    return Depends(fair_share)
