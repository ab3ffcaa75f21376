"""What the sentence model beside bm25 costs: added latency of a search by words, and added memory.

    python -m bench.text_model [--catalog DIR] [--queries CSV...] [--repeat N]

Latency: each query of the sets ranked by bm25 alone and by the hybrid (the query embedded once,
then fused), in process, over the catalogue's text index and text vectors made on the spot; the
median and 95th percentile of each, and of the difference. Memory: the resident set (VmRSS) of a
fresh interpreter that imports the similarity service, with TEXT_MODEL=none and with the model's
ONNX copy loaded (as the service loads it, one ONNX Runtime thread) and one query embedded; the
difference is what the service adds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.machine import cpu_name
from evaluation.settings import DEFAULT_TEXT_QUERIES
from evaluation.text import rankings, read_text_queries, written_now
from indexing.text_export import text_model_for_index

RSS_PROBE = """
import re, sys
from pathlib import Path
import similarity_service.app  # what the service imports: FastAPI, Faiss, the catalogue code
from lookalike.catalog.text_embedding import TextModels
if sys.argv[1] != "none":
    models = TextModels.from_setting(sys.argv[1], 1)
    models.embedder(Path(sys.argv[2])).embed_query("green velvet sofa")
print(re.search(r"VmRSS:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1))
"""


def rss_mib(setting: str, onnx_copy: Path) -> float:
    found = subprocess.run([sys.executable, "-c", RSS_PROBE, setting, str(onnx_copy)], capture_output=True, text=True,
                           check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return int(found.stdout.split()[-1]) / 1024


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.text_model", description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", type=Path, default=Path("../shared/furniture/catalog"))
    parser.add_argument("--queries", type=Path, nargs="+", default=DEFAULT_TEXT_QUERIES)
    parser.add_argument("--repeat", type=int, default=5, help="times each query is ranked; the median counts")
    parser.add_argument("--text-model", default="auto")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads, as SIMILARITY_TEXT_MODEL_THREADS")
    args = parser.parse_args(argv)
    queries = [q.query for path in args.queries for q in read_text_queries(path)]
    with tempfile.TemporaryDirectory(prefix="bench-text-") as work:
        model = text_model_for_index(args.text_model, Path(work), args.threads)
        if model is None:
            print("error: no text model to measure (TEXT_MODEL resolved to none)", file=sys.stderr)
            return 2
        searched = written_now(args.catalog, Path(work), model)
        ranked = rankings(searched)
        times: dict[str, list[float]] = {"bm25": [], "hybrid": [], "embed": []}
        for q in queries * 2:  # the first pass warms caches; only the second counts
            for name in ("bm25", "hybrid", "embed"):
                runs = []
                for _ in range(args.repeat):
                    started = time.perf_counter()
                    if name == "embed":
                        model.embed_query(q)
                    else:
                        ranked[name](q)
                    runs.append((time.perf_counter() - started) * 1000)
                times[name].append(statistics.median(runs))
        counted = {name: values[len(queries):] for name, values in times.items()}
        without, with_model = rss_mib("none", model.directory), rss_mib(args.text_model, model.directory)
    added = [h - b for h, b in zip(counted["hybrid"], counted["bm25"])]
    print(f"{datetime.now(UTC):%Y-%m-%d}, {cpu_name()}, {os.cpu_count()} CPUs visible, ONNX Runtime threads "
          f"{args.threads}; {len(searched.items)} catalogue photos, {len(queries)} queries, "
          f"median of {args.repeat} runs each; text model {model.info.name}")
    for name, values in [*counted.items(), ("added by hybrid", added)]:
        print(f"  {name:<16} median {statistics.median(values):7.2f} ms   p95 {percentile(values, 0.95):7.2f} ms")
    print(f"  RSS of the similarity service's imports: {without:.0f} MiB with TEXT_MODEL=none, {with_model:.0f} MiB "
          f"with the model loaded: +{with_model - without:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
