"""`python -m evaluation.text --index DIR --queries CSV... --out DIR`: how well words find products, bm25 against hybrid.

With `--catalog DIR` instead of an index, it writes a text index for that catalogue on the spot
(and, with a text model, embeds its items' texts): text search reads no photo embedding, so its
figures need no ResNet forward pass (only ImageNet tags would).

A query set is a CSV with `query`, `relevant_ids` (space-separated) and `relevant_categories`
(space-separated), and optionally `kind` to group the figures by. Results are what the API
returns, one product per variant group; a result is relevant when its product is listed or its
category is. Each query runs twice, by bm25 alone and by bm25 fused with the sentence model
(TEXT_MODEL, `lookalike.catalog.hybrid`), and the report gives, per kind: precision@1 (the first
result is relevant), precision@10 (relevant results among the first 10, over 10; category level
where the set names categories) and recall@10 (listed products found among the first 10, over
those in the index; only where the set lists products).
"""

from __future__ import annotations

import csv
import sys
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evaluation.report import report_program, served_version
from evaluation.settings import TextEvalSettings
from indexing.catalog import scan_catalog
from indexing.text_export import text_model_for_index
from lookalike.catalog.hybrid import Fusion, Meaning, bm25_products, fused_products
from lookalike.catalog.layout import SYNONYMS, TEXT_INDEX, TEXT_VECTORS, read_items, read_manifest
from lookalike.catalog.manifest import CatalogItem
from lookalike.catalog.products import Products
from lookalike.catalog.text_embedding import TextEmbedder, TextModels, item_text
from lookalike.catalog.text_index import Match, TextIndex, text_fields, write_text_index
from lookalike.errors import ApiError, EvalError

DEPTH = 10


@dataclass(frozen=True)
class TextQuery:
    kind: str
    query: str
    ids: frozenset[str]
    categories: frozenset[str]


def read_text_queries(path: Path) -> list[TextQuery]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise EvalError(f"cannot read the text query set {path}: {exc.strerror or exc}") from None
    if not rows or "query" not in rows[0]:
        raise EvalError(f"{path} needs a header with query, relevant_ids and relevant_categories")
    return [TextQuery(row.get("kind") or "all", row["query"], frozenset((row.get("relevant_ids") or "").split()),
                      frozenset((row.get("relevant_categories") or "").split())) for row in rows]


@dataclass(frozen=True)
class Searched:
    """What is searched: a version's text index, items and text vectors, or a catalogue's, made on the spot."""

    text: TextIndex
    items: dict[int, CatalogItem]
    version: str
    weights: str
    meaning: Meaning | None

    @property
    def products(self) -> Products:
        return Products.of(list(self.items.values()))


def served(index_root: Path, model: TextModels | None) -> Searched:
    version_dir = served_version(index_root)
    text = TextIndex.load(version_dir)
    if text is None:
        raise EvalError(f"{version_dir.name} has no text index; run `make index` again, or pass --catalog")
    manifest = read_manifest(version_dir)
    try:
        meaning = Meaning.load(version_dir, manifest, model, Fusion())
    except ApiError as exc:
        raise EvalError(exc.message) from None
    if model is not None and meaning is None:
        print(f"warning: {version_dir.name} was indexed without a text model, so only bm25 is reported; re-index "
              f"with --text-model {model.identity.name}, or pass --catalog to embed a catalogue's texts on the spot",
              file=sys.stderr)
    return Searched(text, {i.label: i for i in read_items(version_dir)}, manifest.version, manifest.model.weights,
                    meaning)


def written_now(catalog: Path, work: Path, model: TextEmbedder | None) -> Searched:
    """The catalogue's products.csv as the indexing job would index it, without ImageNet tags."""
    scan = scan_catalog(catalog)
    items = [CatalogItem(label=at, id=e.id, category=e.category, name=e.name, file=e.file, extra=e.extra,
                         group_id=e.group) for at, e in enumerate(scan.entries)]
    if not items:
        raise EvalError(f"no images found in {catalog}")
    fields = text_fields(items)
    write_text_index(work / TEXT_INDEX, items, fields)
    if (catalog / SYNONYMS).is_file():
        (work / SYNONYMS).write_bytes((catalog / SYNONYMS).read_bytes())
    text = TextIndex.load(work)
    assert text is not None
    meaning = None
    if model is not None:
        np.save(work / TEXT_VECTORS, model.embed_texts([item_text(i, fields, {}) for i in items]))
        meaning = Meaning(model, np.load(work / TEXT_VECTORS), Fusion())
    return Searched(text, {i.label: i for i in items}, f"catalogue {catalog} (text only)", "none: text only", meaning)


Ranking = Callable[[str], list[Match]]


def rankings(searched: Searched) -> dict[str, Ranking]:
    """`bm25` alone, and `hybrid` where there is a text model: each as the similarity service ranks them."""
    products = searched.products
    group_of = products.group_of
    text = searched.text
    found: dict[str, Ranking] = {"bm25": lambda q: bm25_products(text, text.parse(q), DEPTH, None, None, group_of)}
    meaning = searched.meaning
    if meaning is not None:
        labels = np.fromiter(searched.items, dtype=np.int64)
        found["hybrid"] = lambda q: fused_products(text, meaning, q, DEPTH, labels, None, None, group_of,
                                                   lambda label: searched.items[label].name)
    return found


def _mean(rows: list[dict[str, object]], key: str) -> float | None:
    values = [float(v) for v in (r[key] for r in rows) if isinstance(v, int | float)]
    return sum(values) / len(values) if values else None


def evaluate(searched: Searched, queries: list[TextQuery]) -> dict[str, object]:
    products = searched.products
    by_ranking: dict[str, object] = {}
    for name, rank in rankings(searched).items():
        per_query = []
        for q in queries:
            relevant_groups = {products.group_of[i.label] for i in searched.items.values() if i.id in q.ids}
            try:
                found_items = [searched.items[m.label] for m in rank(q.query)]
            except ApiError as exc:
                raise EvalError(f"query {q.query!r}: {exc.message}") from None

            def relevant(item: CatalogItem, q: TextQuery = q) -> bool:
                group = products.groups[item.group]
                return item.category in q.categories or any(member in q.ids for member in group)

            found_groups = {products.group_of[i.label] for i in found_items} & relevant_groups
            per_query.append({"kind": q.kind, "query": q.query,
                              "precision@1": float(bool(found_items) and relevant(found_items[0])),
                              "precision@10": sum(relevant(i) for i in found_items) / DEPTH,
                              "recall@10": len(found_groups) / len(relevant_groups) if relevant_groups else None,
                              "top": [f"{i.name} ({i.category})" for i in found_items[:3]]})
        kinds: dict[str, list[dict[str, object]]] = defaultdict(list)
        for row in per_query:
            kinds[str(row["kind"])].append(row)
        kinds["all"] = per_query
        summary = {kind: {"queries": len(rows), "precision@1": _mean(rows, "precision@1"),
                          "precision@10": _mean(rows, "precision@10"), "recall@10": _mean(rows, "recall@10")}
                   for kind, rows in kinds.items()}
        by_ranking[name] = {"summary": summary, "queries": per_query}
    model = searched.meaning.embedder.info.model_dump() if searched.meaning else None
    return {"index_version": searched.version, "weights": searched.weights, "text_model": model, **by_ranking}


def markdown(report: dict[str, object]) -> str:
    model = report.get("text_model")
    lines = [f"## Text search, {report['index_version']}", "",
             f"Text model: {model['name'] + ' (' + model['digest'][:12] + ')' if isinstance(model, dict) else 'none'}. "
             "Results are products (one per variant group); precision@10 counts relevant categories or products, "
             "recall@10 listed products only.", "",
             "| queries | ranking | n | precision@1 | precision@10 | recall@10 |", "|---|---|---:|---:|---:|---:|"]
    rankings = [name for name in ("bm25", "hybrid") if isinstance(report.get(name), dict)]
    first = report[rankings[0]]
    assert isinstance(first, dict)
    for kind in first["summary"]:
        for name in rankings:
            ranking = report[name]
            assert isinstance(ranking, dict)
            row = ranking["summary"][kind]
            r = row["recall@10"]
            lines.append(f"| {kind} | {name} | {row['queries']} | {row['precision@1']:.3f} | {row['precision@10']:.3f} | "
                         f"{'n/a' if r is None else f'{r:.3f}'} |")
    return "\n".join(lines) + "\n"


def text_report(settings: TextEvalSettings, work: Path) -> dict[str, object]:
    queries = [q for path in settings.queries for q in read_text_queries(path)]
    if settings.catalog:  # the model's ONNX copy, as an index holds it: the queries are embedded as served
        searched = written_now(settings.catalog, work, text_model_for_index(settings.text_model, work))
    else:
        searched = served(settings.index, TextModels.from_setting(settings.text_model))
    return evaluate(searched, queries)


PROGRAM = report_program(TextEvalSettings, "text_report", text_report, markdown, prog="python -m evaluation.text")
main = PROGRAM.main

if __name__ == "__main__":
    sys.exit(main())
