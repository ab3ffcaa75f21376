"""Every index version measured on the store's own catalogue, and the gate that keeps a worse one unpublished.

Stores have no labelled queries, but a catalogue labels itself: a product's other photos, and its
variants (`item_group_id`), are what one of its photos should find. For each photo whose product
or group has another photo in the same category, the job searches the version's own index (after
any reduction) with the photo's stored vector, itself left out, and asks whether another photo of
the same product or group comes first (recall@1) or among the first 10 (recall@10). This is how
Stanford Online Products is scored.

With fewer than MIN_QUERIES judged photos there is no figure, only "not enough to judge", and no
gate. With random weights the figures test the harness, not the model.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from lookalike.catalog.faiss_store import CategoryIndex
from lookalike.catalog.manifest import CatalogItem, RecallFigures, SelfEval
from lookalike.errors import SelfEvalRegressed

MIN_QUERIES = 20
MAX_QUERIES = 5000
"""A larger catalogue is judged on a seeded sample of this many photos, so the job's cost stays bounded."""
DEFAULT_MARGIN = 0.05
K = 10
_BATCH = 1024


def figures(queries: int, found_at_1: int, found_at_10: int, min_queries: int = MIN_QUERIES) -> RecallFigures:
    enough = queries >= min_queries
    return RecallFigures(queries=queries, found_at_1=found_at_1, found_at_10=found_at_10,
                         recall_at_1=found_at_1 / queries if enough else None,
                         recall_at_10=found_at_10 / queries if enough else None)


def judged_labels(items: list[CatalogItem]) -> dict[str, list[int]]:
    """Per category, the photos whose product or variant group has another photo in that category."""
    members = Counter((i.category, i.group) for i in items)
    judged: dict[str, list[int]] = {}
    for item in items:
        if members[(item.category, item.group)] >= 2:
            judged.setdefault(item.category, []).append(item.label)
    return judged


def self_evaluate(items: list[CatalogItem], vectors: np.ndarray, indexes: dict[str, CategoryIndex], *,
                  weights: str, reduce: str = "none", max_queries: int = MAX_QUERIES, seed: int = 0) -> SelfEval:
    """Leave-one-out recall@1 and @10 of the version's indexes; `vectors[label]` is a photo's indexed vector."""
    group_of = {i.label: i.group for i in items}
    judged = judged_labels(items)
    total = sum(len(labels) for labels in judged.values())
    sampled = total > max_queries
    if sampled:
        everyone = np.array([label for labels in judged.values() for label in labels], dtype=np.int64)
        keep = set(np.random.default_rng(seed).choice(everyone, max_queries, replace=False).tolist())
        judged = {c: [label for label in labels if label in keep] for c, labels in judged.items()}
    per_category: dict[str, RecallFigures] = {}
    for category in sorted(judged):
        labels = judged[category]
        index = indexes[category].index
        k = min(K + 1, index.ntotal)
        at_1 = at_10 = 0
        for start in range(0, len(labels), _BATCH):
            batch = labels[start:start + _BATCH]
            queries = np.ascontiguousarray(vectors[batch], dtype=np.float32)
            _, found = index.search(queries, k)
            for label, row in zip(batch, found):
                neighbours = [int(n) for n in row if n >= 0 and n != label][:K]
                hits = [group_of[n] == group_of[label] for n in neighbours]
                at_1 += bool(hits) and hits[0]
                at_10 += any(hits)
        per_category[category] = figures(len(labels), at_1, at_10)
    overall = figures(sum(f.queries for f in per_category.values()), sum(f.found_at_1 for f in per_category.values()),
                      sum(f.found_at_10 for f in per_category.values()))
    return SelfEval(overall=overall, per_category=per_category, min_queries=MIN_QUERIES, weights=weights,
                    reduce=reduce, sampled=sampled)


def describe(result: SelfEval | None) -> str:
    """One line: the figures and what they rest on, or why there are none."""
    if result is None:
        return "Self-evaluation: none (built before versions measured themselves)"
    o = result.overall
    if o.recall_at_1 is None or o.recall_at_10 is None:
        text = (f"Self-evaluation: not enough to judge ({o.queries} judged queries, {result.min_queries} needed: "
                "products with at least two photos, or variant groups)")
    else:
        text = (f"Self-evaluation: recall@1 {o.recall_at_1:.3f}, recall@10 {o.recall_at_10:.3f} "
                f"on {o.queries} queries{' (a sample)' if result.sampled else ''}")
    if result.reduce != "none":
        text += f", reduce {result.reduce}"
    if result.weights == "random":
        text += " [random weights: these figures test the harness, not the model]"
    return text


def describe_categories(result: SelfEval) -> list[str]:
    lines = []
    for name, f in result.per_category.items():
        if f.recall_at_1 is None or f.recall_at_10 is None:
            lines.append(f"  {name:<16} not enough to judge ({f.queries} queries)")
        else:
            lines.append(f"  {name:<16} recall@1 {f.recall_at_1:.3f}  recall@10 {f.recall_at_10:.3f}  ({f.queries} queries)")
    return lines


def publish_gate(new: SelfEval, served: SelfEval | None, served_version: str | None, margin: float,
                 force: bool) -> str:
    """The line the summary prints about the gate; SelfEvalRegressed when the new version must not be published.

    It refuses when the new overall recall@10 lies more than `margin` below the served version's and
    both rest on enough queries; `force` publishes anyway, and says so.
    """
    if served is None or served_version is None:
        return "publish gate: nothing to compare with (no served version, or one built before self-evaluation)"
    before, after = served.overall.recall_at_10, new.overall.recall_at_10
    if before is None or after is None:
        return (f"publish gate: not applied, not enough judged queries (this version {new.overall.queries}, "
                f"served {served_version} {served.overall.queries}; {new.min_queries} needed)")
    drop = before - after
    if drop <= margin:
        return f"publish gate: passed, recall@10 {after:.3f} against {before:.3f} served by {served_version}"
    where = [_category_change(name, served.per_category.get(name), f) for name, f in new.per_category.items()]
    message = (f"recall@10 fell by {drop:.3f} (from {before:.3f} served by {served_version} to {after:.3f} on "
               f"{new.overall.queries} queries), more than the margin {margin:.3f}. By category: "
               + "; ".join(w for w in where if w) + ".")
    if new.weights == "random":
        message += " (Random weights: the figures test the harness, not the model.)"
    if force:
        return f"publish gate: FORCED, published although {message}"
    raise SelfEvalRegressed(
        f"Not published: {message} A wrong weights file, a broken preprocessing change or a bad reduction does "
        f"this. The served version is untouched; pass --force to publish all the same.")


def _category_change(name: str, before: RecallFigures | None, after: RecallFigures) -> str:
    now = f"{after.found_at_10}/{after.queries} found in the top 10"
    if before is None:
        return f"{name} {now} (new category)"
    was = f"{before.found_at_10}/{before.queries}"
    if before.recall_at_10 is not None and after.recall_at_10 is not None:
        return f"{name} {before.recall_at_10:.3f} -> {after.recall_at_10:.3f} ({now}, was {was})"
    return f"{name} {now}, was {was} (too few queries to judge the category alone)"
