"""What shoppers taught a text query, and how it joins the text ranking: bounded, so no client rewrites it.

Text scores run from 0 to 1 (bm25 normalised, 1 the best match). Votes become a prior per
item, from -weight to +weight, where the default weight is that of a strong text match:

    prior = weight * clamp(net_networks / full_at, -1, 1)    where |net_networks| >= min_networks, else 0

`net_networks` counts each client network once (an IPv4 /24 or IPv6 /64, see
`FeedbackStore.net_votes`), so twenty sessions from one address count as one session. Nothing
moves until `min_networks` networks agree (GATEWAY_LEARNT_MIN_NETWORKS, 2): text scores of
matching products lie close together (0.7 to 0.9 is common), so any prior one network could
give would reorder them, and one household or office must not reorder a shop for everyone.
`full_at` agreeing networks (GATEWAY_LEARNT_FULL_AT, at least 2) give the full weight. Votes
count only for products the search they name showed (`gateway.feedback`). The blended score is
(text + prior) / (1 + weight), kept within 0 to 1.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass


def learned_prior(net_networks: Mapping[str, int], weight: float = 1.0, full_at: int = 3,
                  min_networks: int = 2) -> dict[str, float]:
    """Item id -> prior in [-weight, weight], from the net count of client networks that liked it; none for an
    item fewer than `min_networks` networks agree on."""
    return {item: weight * max(-1.0, min(1.0, net / full_at)) for item, net in net_networks.items()
            if net and abs(net) >= min_networks}


@dataclass(frozen=True)
class Blended:
    id: str
    score: float
    text_score: float
    prior: float

    @property
    def learned(self) -> bool:
        """The learned prior contributed: the votes moved this item, or brought it in."""
        return self.prior != 0.0


def blend(text_hits: Iterable[tuple[str, float]], priors: Mapping[str, float], k: int,
          weight: float = 1.0) -> list[Blended]:
    """The k best of the text hits (id, score 0..1) and the learned priors, by (text + prior) / (1 + weight).

    An item liked for the query but absent from the text hits joins with a text score of 0, so a
    word the catalogue lacks ("seat") finds what shoppers liked for it; one that shoppers only
    disliked and the text did not find stays out.
    """
    text = dict(text_hits)
    candidates = set(text) | {item for item, prior in priors.items() if prior > 0}
    scale = 1.0 + weight
    ranked = [Blended(item, max(0.0, min(1.0, (text.get(item, 0.0) + priors.get(item, 0.0)) / scale)),
                      text.get(item, 0.0), priors.get(item, 0.0)) for item in candidates]
    ranked.sort(key=lambda b: (-b.score, -b.text_score, b.id))
    return ranked[:k]
