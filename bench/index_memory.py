"""`make bench-index`, the re-index job's memory: its peak RSS on a catalogue of `--job-products` products.

A store re-indexes while its services serve, so the job's memory counts beside theirs. The job runs
as `lookalike index` runs it (`python -m indexing`), in a process of its own, into a fresh index;
its peak is the kernel's own count (`ru_maxrss` from `wait4`), the most it ever held resident.
Writes `index_rss_peak_mb` into bench/out/index_report.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.machine import cpu_name
from indexing.catalog import scan_catalog

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "furniture"


def say(message: str) -> None:
    print(f"[bench-index] {message}", flush=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--job-catalog", type=Path, default=SHARED / "catalog")
    parser.add_argument("--job-products", type=int, default=100, help="products (photos) indexed, spread over "
                        "the categories; 0 skips the job's memory")
    parser.add_argument("--job-weights", default="random")
    parser.add_argument("--job-text-model", default="none", help="TEXT_MODEL for the job (none: photos alone)")


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


def job_peak_rss_mb(catalog: Path, index: Path, weights: str, text_model: str) -> float:
    env = {**os.environ, "TEXT_MODEL": text_model, "LOG_LEVEL": "WARNING"}
    process = subprocess.Popen([sys.executable, "-m", "indexing", "--catalog", str(catalog), "--index", str(index),
                                "--weights", weights], env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"the indexing job exited with status {process.returncode}")
    return round(usage.ru_maxrss / 1024, 1)


def run(args: argparse.Namespace) -> dict[str, object]:
    if not args.job_products:
        return {}
    with tempfile.TemporaryDirectory(prefix="bench-index-job-") as tmp:
        catalog = small_catalog(args.job_catalog, args.job_products, Path(tmp) / "catalog")
        say(f"indexing job: {args.job_products} products, WEIGHTS={args.job_weights}, TEXT_MODEL={args.job_text_model}")
        peak = job_peak_rss_mb(catalog, Path(tmp) / "index", args.job_weights, args.job_text_model)
    say(f"  peak RSS {peak:.0f} MB")
    report: dict[str, object] = {"index_rss_peak_mb": peak, "index_rss_details": {
        "products": args.job_products, "weights": args.job_weights, "text_model": args.job_text_model,
        "cpu": cpu_name(), "cores": len(os.sched_getaffinity(0))}}
    path = args.out / "index_report.json"
    previous = json.loads(path.read_text()) if path.is_file() else {}
    path.write_text(json.dumps({**previous, **report}, indent=2) + "\n")
    return report
