"""`python -m evaluation.text --index DIR --queries CSV --out DIR`: how well words find products.

With `--catalog DIR` instead of an index, it writes a text index for that catalogue on the spot:
text search reads no embedding, so its figures need no forward pass (only ImageNet tags would).

A query set is a CSV with `query`, `relevant_ids` (space-separated) and `relevant_categories`
(space-separated), and optionally `kind` to group the figures by. A result is relevant when its id
is listed or its category is. It runs the similarity service's own text index on the serving
version and reports precision@1 (the first result is relevant), precision@10 (relevant results
among the first 10, over 10) and recall@10 (relevant items among the first 10, over the relevant
items in the index). Text search reads no embedding: only ImageNet tags depend on the weights,
and `random` weights write none.
"""

from __future__ import annotations

import csv
import sys
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from evaluation.report import served_version, write_report
from evaluation.settings import TextEvalSettings
from indexing.catalog import scan_catalog
from lookalike.catalog.layout import SYNONYMS, TEXT_INDEX, read_items, read_manifest
from lookalike.catalog.manifest import CatalogItem
from lookalike.catalog.text_index import TextIndex, text_fields, write_text_index
from lookalike.errors import ApiError, EvalError, JobError
from lookalike.settings import read_command_line

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
    """What is searched: a version's text index and items, or a catalogue's, written on the spot."""

    text: TextIndex
    items: dict[int, CatalogItem]
    version: str
    weights: str


def served(index_root: Path) -> Searched:
    version_dir = served_version(index_root)
    text = TextIndex.load(version_dir)
    if text is None:
        raise EvalError(f"{version_dir.name} has no text index; run `make index` again, or pass --catalog")
    manifest = read_manifest(version_dir)
    return Searched(text, {i.label: i for i in read_items(version_dir)}, manifest.version, manifest.model.weights)


def written_now(catalog: Path, work: Path) -> Searched:
    """The catalogue's products.csv as the indexing job would index it, without ImageNet tags."""
    scan = scan_catalog(catalog)
    items = [CatalogItem(label=at, id=e.id, category=e.category, name=e.name, file=e.file, extra=e.extra)
             for at, e in enumerate(scan.entries)]
    if not items:
        raise EvalError(f"no images found in {catalog}")
    write_text_index(work / TEXT_INDEX, items, text_fields(items))
    if (catalog / SYNONYMS).is_file():
        (work / SYNONYMS).write_bytes((catalog / SYNONYMS).read_bytes())
    text = TextIndex.load(work)
    assert text is not None
    return Searched(text, {i.label: i for i in items}, f"catalogue {catalog} (text only)", "none: text only")


def evaluate(searched: Searched, queries: list[TextQuery]) -> dict[str, object]:
    per_query = []
    for q in queries:
        relevant = {i.id for i in searched.items.values() if i.id in q.ids or i.category in q.categories}
        try:
            found_items = [searched.items[m.label] for m in searched.text.search(searched.text.parse(q.query), DEPTH)]
        except ApiError as exc:
            raise EvalError(f"query {q.query!r}: {exc.message}") from None
        found = sum(i.id in relevant for i in found_items)
        per_query.append({"kind": q.kind, "query": q.query, "relevant": len(relevant),
                          "precision@1": float(bool(found_items) and found_items[0].id in relevant),
                          "precision@10": found / DEPTH,
                          "recall@10": found / len(relevant) if relevant else None,
                          "top": [i.name for i in found_items[:3]]})
    kinds: dict[str, list[dict[str, object]]] = defaultdict(list)
    for row in per_query:
        kinds[str(row["kind"])].append(row)
    kinds["all"] = per_query

    def mean(rows: list[dict[str, object]], key: str) -> float | None:
        values = [float(v) for v in (r[key] for r in rows) if isinstance(v, int | float)]
        return sum(values) / len(values) if values else None

    summary = {kind: {"queries": len(rows), "precision@1": mean(rows, "precision@1"),
                      "precision@10": mean(rows, "precision@10"),
                      "recall@10": mean(rows, "recall@10")} for kind, rows in kinds.items()}
    return {"index_version": searched.version, "weights": searched.weights, "summary": summary, "queries": per_query}


def markdown(report: dict[str, object]) -> str:
    summary = report["summary"]
    assert isinstance(summary, dict)
    lines = [f"## Text search, {report['index_version']}", "",
             "| queries | n | precision@1 | precision@10 | recall@10 |", "|---|---:|---:|---:|---:|"]
    for kind, row in summary.items():
        p, r = row["precision@10"], row["recall@10"]
        lines.append(f"| {kind} | {row['queries']} | {row['precision@1']:.3f} | {p:.3f} | "
                     f"{'n/a' if r is None else f'{r:.3f}'} |")
    return "\n".join(lines) + "\n"


def evaluate_text(settings: TextEvalSettings) -> int:
    try:
        queries = read_text_queries(settings.queries)
        with tempfile.TemporaryDirectory(prefix="text-eval-") as work:
            searched = written_now(settings.catalog, Path(work)) if settings.catalog else served(settings.index)
            report = evaluate(searched, queries)
    except JobError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    write_report(settings.out, "text_report", report, markdown(report))
    print(markdown(report))
    return 0


def main(argv: list[str] | None = None) -> int:
    return evaluate_text(read_command_line(TextEvalSettings, argv, prog="python -m evaluation.text"))


if __name__ == "__main__":
    sys.exit(main())
