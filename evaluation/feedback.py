"""`python -m evaluation.feedback --index DIR --out DIR`: shoppers' feedback simulated, as the Koblenz lab measured it.

Simulated shoppers look for a category by a word the catalogue's text does not contain, one
shopper (one anonymous session, from a network of its own) a round, and each does what the page
lets them do:

1. search the words (k=20) and see p@20: the share of the 20 results in the category they mean;
2. like every result of that category and mark the others "not like this". With nothing to like,
   they browse: a seeded sample of 20 catalogue products stands in for a page of the shop, and they
   mark the right ones there;
3. press Refine once (`like=` / `unlike=`), see the refined p@20, and mark that list the same way.

Every mark on a search's answer is a `POST /api/v1/feedback` for those words, naming that answer's
`query_id`, as the page sends it. Marks while browsing are not votes: no search for the words showed
those products, and the gateway counts a vote only for what its search showed; they steer the
Refine, whose list the shopper then marks. Each shopper's connections leave from its own loopback
address, 127.N.M.1 (all of 127.0.0.0/8 is loopback on Linux), so each is its own /24 network, as
the gateway's learning counts voters. Two parts are reported apart:
- learned text associations: p@20 of step 1, which only earlier shoppers' votes move;
- embedding refinement: p@20 of step 3, Rocchio's rule within one search. A refined list is
  searched in the categories of the words' top products and of the liked ones, so once a shopper
  liked the right category it shows that category; the order inside it is the embedding's, and
  with `random` weights (all within cos 0.998) that order is chance.

It starts a real similarity service and gateway on loopback and speaks to them over HTTP only, with
no classifier (text searches only), on a view of the serving version with no synonyms (so "couch" is
not "sofa") and a fresh SQLite feedback database, with the per-session rate limit raised for
shoppers who mark 40 results in a second.
"""

from __future__ import annotations

import asyncio
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from evaluation.report import report_program, served_version
from evaluation.settings import FeedbackEvalSettings
from lookalike.catalog.layout import SYNONYMS, IndexLayout, read_items, read_manifest
from lookalike.errors import EvalError
from supervisor.stack import loopback_stack

BROWSED = 20  # products on a page of the shop that a shopper who found nothing looks through
TARGET = 0.75
# Category words absent from the demo catalogue's names and columns. The issue also named "seat", but
# 39 sofa names hold it ("2-seat sofa"): kept, as the case where the words find the wrong category.
TERMS = {"couch": "sofa", "light": "lamp", "cot": "bed", "seating": "chair", "seat": "chair"}


@dataclass(frozen=True)
class TermRun:
    """One word's shoppers, a round each: p@depth of the words, p@depth after Refine, and who had to browse."""

    term: str
    category: str
    words_precision: list[float]
    refined_precision: list[float]
    browsed: list[bool]

    @staticmethod
    def rounds_to_target(series: list[float], offset: int) -> int | None:
        """Feedback rounds until a list reached the target, None if none did. For the words, offset 0:
        the shoppers who had voted before a search reached it. For refinement, offset 1: the round
        whose Refine reached it counts."""
        return next((at + offset for at, p in enumerate(series) if p >= TARGET), None)


def serving_without_synonyms(index_root: Path, work: Path) -> Path:
    """A view of the serving version under `work` (returned: the view's root): its files linked, an
    empty synonyms list written."""
    version_dir = served_version(index_root)
    view = IndexLayout(work)
    target = view.versions / version_dir.name
    target.mkdir(parents=True)
    for entry in version_dir.iterdir():
        if entry.name != SYNONYMS:
            (target / entry.name).symlink_to(entry.resolve())
    (target / SYNONYMS).write_text("# none: the simulation measures what votes teach, not what synonyms do\n")
    view.point_to(version_dir.name)
    return work


def precision(results: list[dict[str, Any]], category: str, depth: int) -> float:
    """p@depth: results of the category meant among the first `depth`, over `depth` (a short list scores less)."""
    return sum(r["category"] == category for r in results[:depth]) / depth


def shopper_address(number: int) -> str:
    """Shopper `number`'s own loopback address, in a /24 of its own: 127.1.0.1, 127.1.1.1, ... 127.2.0.1, ..."""
    return f"127.{1 + number // 256 % 254}.{number % 256}.1"


class Shopper:
    """One session's searches and marks, from one network, through the gateway's public API."""

    def __init__(self, client: httpx.AsyncClient, term: str, category: str, depth: int) -> None:
        self.client, self.term, self.category, self.depth = client, term, category, depth
        self.liked: list[str] = []
        self.unliked: list[str] = []
        self.voted: set[str] = set()

    async def search(self, refine: bool = False) -> tuple[list[dict[str, Any]], str]:
        """The results of the words (or of Refine), and the answer's `query_id` that votes on them name."""
        params: dict[str, Any] = {"q": self.term, "k": self.depth}
        if refine:
            params |= {"like": self.liked[:20], "unlike": self.unliked[:20]}
        response = await self.client.get("/api/v1/search/text", params=params)
        if response.status_code != 200:
            raise EvalError(f"search {params} answered {response.status_code}: {response.text[:300]}")
        body = response.json()
        return body["results"], body["query_id"]

    async def mark(self, products: list[tuple[str, str]], query_id: str | None) -> None:
        """Like the products (id, category) of the category meant, unlike the others; each a stored vote on the
        search `query_id` names, or, while browsing (None), a mark for Refine alone."""
        for item_id, category in products:
            vote = "like" if category == self.category else "unlike"
            marks = self.liked if vote == "like" else self.unliked
            if item_id not in self.liked and item_id not in self.unliked:
                marks.append(item_id)
            if query_id is None or item_id in self.voted:
                continue  # a product marked while browsing is voted on once a search for the words shows it
            self.voted.add(item_id)
            response = await self.client.post("/api/v1/feedback", json={
                "query": self.term, "item_id": item_id, "vote": vote, "query_id": query_id})
            if response.status_code != 201:
                raise EvalError(f"a vote answered {response.status_code}: {response.text[:300]}")


def simulate(index_root: Path, work: Path, rounds: int, seed: int, depth: int,
             terms: dict[str, str] | None = None) -> dict[str, Any]:
    """Start a similarity service and a gateway on the view, on loopback, and let the shoppers use them."""
    root = serving_without_synonyms(index_root, work / "index")
    env = {"INDEX": str(root), "GATEWAY_FEEDBACK_DB_URL": f"sqlite:///{work / 'feedback.sqlite3'}",
           "GATEWAY_FEEDBACK_PER_MINUTE": "100000", "GATEWAY_FEEDBACK_PER_SESSION": "100000", "LOG_LEVEL": "WARNING",
           # Fair shares off: a simulated shopper searches and votes faster than a person (one address each).
           "GATEWAY_SEARCHES_PER_MINUTE": "0", "GATEWAY_VOTES_PER_MINUTE": "0", "GATEWAY_EVENTS_PER_MINUTE": "0"}
    # No classifier: text searches only, so the gateway can't be ready, only alive.
    with loopback_stack(env, {"similarity": "/readyz", "gateway": "/healthz"}) as stack:
        return asyncio.run(shoppers(stack.url("gateway"), served_version(root), rounds, seed, depth, terms or TERMS))


async def shoppers(gateway: str, version_dir: Path, rounds: int, seed: int, depth: int,
                   terms: dict[str, str]) -> dict[str, Any]:
    manifest = read_manifest(version_dir)
    catalogue = sorted({(i.id, i.category) for i in read_items(version_dir)})
    runs = []
    shoppers_so_far = 0
    for term, category in terms.items():
        words: list[float] = []
        after_refine: list[float] = []
        browsed: list[bool] = []
        for round_number in range(rounds):
            transport = httpx.AsyncHTTPTransport(local_address=shopper_address(shoppers_so_far))
            shoppers_so_far += 1
            async with httpx.AsyncClient(base_url=gateway, timeout=60, transport=transport, headers={
                    "X-Session-ID": f"simulated-{term}-{round_number:03d}"}) as client:
                shopper = Shopper(client, term, category, depth)
                found, shown = await shopper.search()
                words.append(precision(found, category, depth))
                await shopper.mark([(r["id"], r["category"]) for r in found], shown)
                browsed.append(not shopper.liked)
                if not shopper.liked:
                    browsing = random.Random(f"{seed}-{term}-{round_number}")
                    await shopper.mark(browsing.sample(catalogue, min(BROWSED, len(catalogue))), None)
                if shopper.liked or shopper.unliked:
                    refined, shown = await shopper.search(refine=True)
                    await shopper.mark([(r["id"], r["category"]) for r in refined], shown)
                else:
                    refined = []
                after_refine.append(precision(refined, category, depth))
        runs.append(TermRun(term, category, words, after_refine, browsed))
    return report(runs, manifest.version, manifest.model.weights, rounds, depth)


def report(runs: list[TermRun], version: str, weights: str, rounds: int, depth: int) -> dict[str, Any]:
    def mean(values: list[float]) -> float:
        return sum(values) / len(values)

    words_rounds = [r.rounds_to_target(r.words_precision, 0) for r in runs]
    refined_rounds = [r.rounds_to_target(r.refined_precision, 1) for r in runs]
    return {
        "index_version": version, "weights": weights, "depth": depth, "target": TARGET, "rounds": rounds,
        "per_round": [{"round": n + 1, "words_precision": mean([r.words_precision[n] for r in runs]),
                       "refined_precision": mean([r.refined_precision[n] for r in runs])} for n in range(rounds)],
        "terms": [{"term": r.term, "category": r.category, "words_precision": r.words_precision,
                   "refined_precision": r.refined_precision,
                   "browsed": r.browsed, "feedback_rounds_words": w, "feedback_rounds_refined": f}
                  for r, w, f in zip(runs, words_rounds, refined_rounds)],
        "mean_feedback_rounds_words": mean([float(w if w is not None else rounds) for w in words_rounds]),
        "mean_feedback_rounds_refined": mean([float(f if f is not None else rounds) for f in refined_rounds]),
        "all_reached": all(w is not None for w in words_rounds),
    }


def markdown(result: dict[str, Any]) -> str:
    def reached(value: int | None) -> str:
        return str(value) if value is not None else f"not in {result['rounds']}"

    lines = [f"## Feedback simulation, {result['index_version']} (weights: {result['weights']})", ""]
    if result["weights"] == "random":
        lines += ["**`random` weights:** the refined order inside a category is chance; the learned part does "
                  "not depend on the weights.", ""]
    at = f"p@{result['depth']}"
    lines += [f"| round (shopper) | {at}, words + what earlier shoppers taught | {at}, after this shopper's Refine |",
              "|---:|---:|---:|"]
    lines += [f"| {r['round']} | {r['words_precision']:.2f} | {r['refined_precision']:.2f} |" for r in result["per_round"]]
    lines += ["", f"| words | meant | {at} by round (words) | feedback rounds to {at} ≥ {TARGET}: learned | : refined |",
              "|---|---|---|---:|---:|"]
    for t in result["terms"]:
        series = " ".join(f"{p:.2f}" for p in t["words_precision"])
        lines.append(f"| {t['term']} | {t['category']} | {series} | {reached(t['feedback_rounds_words'])} | "
                     f"{reached(t['feedback_rounds_refined'])} |")
    lines += ["", f"Mean feedback rounds to {at} ≥ {TARGET}: learned text associations "
              f"{result['mean_feedback_rounds_words']:.1f}, embedding refinement "
              f"{result['mean_feedback_rounds_refined']:.1f} (the Koblenz lab: 6; the goal: 3 or fewer).", ""]
    return "\n".join(lines)


def feedback_report(settings: FeedbackEvalSettings, work: Path) -> dict[str, Any]:
    return simulate(settings.index, work, settings.rounds, settings.seed, settings.depth)


PROGRAM = report_program(FeedbackEvalSettings, "feedback_report", feedback_report, markdown,
                         prog="python -m evaluation.feedback")
main = PROGRAM.main

if __name__ == "__main__":
    sys.exit(main())
