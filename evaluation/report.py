"""What the evaluations share: the version they read, and their reports (markdown tables for people)."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from evaluation.settings import ReportSettings
from lookalike.catalog.layout import IndexLayout
from lookalike.errors import EvalError
from lookalike.program import Program

R = TypeVar("R", bound=ReportSettings)


def served_version(index_root: Path) -> Path:
    """The serving version's directory; EvalError, saying how to build one, when there is none."""
    version_dir = IndexLayout(index_root).current()
    if version_dir is None:
        raise EvalError(f"There is no index at {index_root}. Build one first with `make index`.")
    return version_dir


def publish_report(out: Path, stem: str, report: dict[str, Any], markdown: str) -> None:
    """`stem`.json for programs and `stem`.md for people, side by side in `out` (made if missing); the markdown
    printed too, for the person who ran it."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    (out / f"{stem}.md").write_text(markdown)
    print(markdown)


def report_program(settings: type[R], stem: str, make: Callable[[R, Path], dict[str, Any]],
                   markdown: Callable[[dict[str, Any]], str], prog: str) -> Program[R]:
    """An evaluation's command: `make` its report, given a scratch folder deleted afterwards, then publish it."""

    def run(read: R) -> int:
        with tempfile.TemporaryDirectory(prefix=f"{stem}-") as work:
            report = make(read, Path(work))
        publish_report(read.out, stem, report, markdown(report))
        return 0

    return Program(settings, run, prog)


RETRIEVAL_KEYS = ("precision@1", "precision@5", "precision@10", "product_recall@1", "product_recall@10")


def figure(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|",
            *("| " + " | ".join(row) + " |" for row in rows)]


def retrieval_rows(configuration: dict[str, Any]) -> list[list[str]]:
    """One row per way of searching: the gate, the gate with hedging at each threshold, no gate."""
    name = configuration["name"]
    searches = [("gate", configuration["gated"])]
    searches += [(f"gate, hedge below {h['hedge_below']:g} ({h['hedged_share']:.0%} hedged)", h)
                 for h in configuration["hedged"]]
    searches.append(("no gate (all categories)", configuration["ungated"]))
    return [[name, search, *(figure(metrics[k]) for k in RETRIEVAL_KEYS)] for search, metrics in searches]


def markdown_report(report: dict[str, Any]) -> str:
    index = report["index"]
    sizes = ", ".join(f"{name} {count}" for name, count in index["categories"].items())
    lines = ["# Lookalike evaluation", ""]
    if "warning" in report:
        lines += [f"> **{report['warning']}**", ""]
    lines += [
        f"Index `{index['version']}` at `{index['root']}`: {index['items']} items ({sizes}), weights "
        f"`{report['weights']}`. Query set `{report['query_set']}`: {report['queries']} queries, "
        f"{report['queries_with_product_ids']} naming products; {len(report['skipped'])} skipped.",
        "",
        "P@k: the share of the top k in the query's category (missing places count as misses). "
        "recall@k: the share of queries naming products with one of them in the top k (– where none do). "
        "*gate*: classify, then search the decided category, as the product does; *hedge below t*: also search "
        "the runner-up when the top probability is below t, merged by score (GATEWAY_HEDGE_BELOW); "
        "*no gate*: search every category, merged by score.",
        "",
        "## Retrieval",
        "",
        *table(["configuration", "search", "P@1", "P@5", "P@10", "recall@1", "recall@10"],
               [row for c in report["configurations"] for row in retrieval_rows(c)]),
        "",
        "## Classification and time per query",
        "",
        "Milliseconds, mean over the timed queries, each one alone (batch of 1) in this process, no HTTP; "
        "the search is the gated one over all queries. The index type does not change the classification.",
        "",
        *table(["configuration", "catalogue", "category accuracy", "decode", "embed + classify", "search", "total"],
               [[c["name"], c["catalog"].split(" from ")[0], figure(c["category_accuracy"]),
                 *(f"{c['time_per_query_ms'][k]:.1f}" for k in ("decode", "embed_and_classify", "search", "total"))]
                for c in report["configurations"]]),
        "",
        f"## Confusion matrix, {report['baseline']}",
        "",
        "Rows: the expected category; columns: the classifier's decision.",
        "",
        *table(["expected \\ decided", *report["confusion"]["labels"]],
               [[label, *(str(n) for n in row)] for label, row in
                zip(report["confusion"]["labels"], report["confusion"]["rows_expected_columns_decided"])]),
        "",
    ]
    if report["skipped"]:
        lines += ["## Skipped queries", "", *(f"- `{s['file']}`: {s['reason']}" for s in report["skipped"]), ""]
    return "\n".join(lines)
