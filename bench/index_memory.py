"""`make bench-index`, the re-index job's memory: its peak RSS on a catalogue of `--job-products` products.

A store re-indexes while its services serve, so the job's memory counts beside theirs. The job runs
as `lookalike index` runs it (`python -m indexing`), in a process of its own, into a fresh index, then
again into the same index (a re-index: the sentence model's ONNX copy and the embeddings are found).
Its torch steps run in children of their own (`indexing.torch_steps`), so its peak is the summed RSS of
the job and its children, sampled every 20 ms; the kernel's count for the largest single process
(`ru_maxrss` of the reaped children) is reported beside it. Writes `index_rss_peak_mb` (the fresh run's),
`index_rss_reindex_peak_mb` and the details into bench/out/index_report.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.machine import cpu_name
from bench.process_memory import process_tree, rss_mb
from indexing.catalog import scan_catalog

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "furniture"


def say(message: str) -> None:
    print(f"[bench-index] {message}", flush=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--job-catalog", type=Path, default=SHARED / "catalog")
    parser.add_argument("--job-products", type=int, default=100, help="products (photos) indexed, spread over "
                        "the categories; 0 skips the job's memory")
    parser.add_argument("--job-weights", default="random")
    parser.add_argument("--job-text-model", default="auto",
                        help="TEXT_MODEL for the job (auto, as a new store runs it; none: photos alone)")


def small_catalog(source: Path, products: int, root: Path) -> Path:
    """`products` photos of `source`, taken in turn from each category, linked into `root`."""
    by_category: dict[str, list[str]] = {}
    for entry in scan_catalog(source).entries:
        by_category.setdefault(entry.category, []).append(entry.file)
    files = [f for i in range(max(map(len, by_category.values()))) for f in
             (members[i] for members in by_category.values() if i < len(members))][:products]
    for file in files:
        (root / file).parent.mkdir(parents=True, exist_ok=True)
        (root / file).symlink_to((source / file).resolve())
    return root


@dataclass(frozen=True)
class JobMemory:
    tree_peak_mb: float
    """The job and its children together, at the worst moment sampled."""
    largest_process_mb: float


def job_memory(catalog: Path, index: Path, weights: str, text_model: str) -> JobMemory:
    env = {**os.environ, "TEXT_MODEL": text_model, "LOG_LEVEL": "WARNING"}
    process = subprocess.Popen([sys.executable, "-m", "indexing", "--catalog", str(catalog), "--index", str(index),
                                "--weights", weights], env=env, stdout=subprocess.DEVNULL)
    tree = 0.0
    while process.poll() is None:
        tree = max(tree, rss_mb(process_tree(process.pid)))
        time.sleep(0.02)
    if process.returncode != 0:
        raise RuntimeError(f"the indexing job exited with status {process.returncode}")
    largest = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the largest process reaped so far
    return JobMemory(round(tree, 1), round(largest, 1))


def run(args: argparse.Namespace) -> dict[str, object]:
    if not args.job_products:
        return {}
    with tempfile.TemporaryDirectory(prefix="bench-index-job-") as tmp:
        catalog = small_catalog(args.job_catalog, args.job_products, Path(tmp) / "catalog")
        say(f"indexing job: {args.job_products} products, WEIGHTS={args.job_weights}, TEXT_MODEL={args.job_text_model}")
        fresh = job_memory(catalog, Path(tmp) / "index", args.job_weights, args.job_text_model)
        say(f"  fresh index: peak RSS {fresh.tree_peak_mb:.0f} MB (job and children; largest process "
            f"{fresh.largest_process_mb:.0f})")
        again = job_memory(catalog, Path(tmp) / "index", args.job_weights, args.job_text_model)
        say(f"  re-index:    peak RSS {again.tree_peak_mb:.0f} MB")
    report: dict[str, object] = {
        "index_rss_peak_mb": fresh.tree_peak_mb, "index_rss_reindex_peak_mb": again.tree_peak_mb,
        "index_rss_details": {
            "products": args.job_products, "weights": args.job_weights, "text_model": args.job_text_model,
            "measured": "summed RSS of the job and its children, sampled every 20 ms",
            "largest_process_mb": fresh.largest_process_mb, "cpu": cpu_name(), "cores": len(os.sched_getaffinity(0))}}
    path = args.out / "index_report.json"
    previous = json.loads(path.read_text()) if path.is_file() else {}
    path.write_text(json.dumps({**previous, **report}, indent=2) + "\n")
    return report
