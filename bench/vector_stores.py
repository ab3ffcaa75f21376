"""`make bench-index` (part two): the same category on both vector stores, Faiss in process and a Milvus server.

One category of `--size` synthetic 2048-d vectors (`index_scale.Mixture`, the same mix as the
index-scale bench) goes into a Faiss flat index and into a Milvus collection (FLAT, or
`--milvus-index`), through the store code the similarity service runs (`CategoryIndex`,
`MilvusCategory`). For each: single-query latency p50 and p99 (one query per call, as the service
searches), recall@10 against Faiss's exact answer, and resident memory: the bench process's growth
for Faiss (the index lives in the similarity service), the Milvus server's whole process tree for
Milvus (the similarity service then holds no vectors). A local Milvus standalone is started for
the run unless `--milvus-uri` names one. Never part of `make test`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.index_scale import Mixture
from bench.process_memory import process_tree, rss_mb
from lookalike.catalog import milvus_store
from lookalike.catalog.faiss_store import CategoryIndex
from lookalike.catalog.manifest import CatalogItem
from lookalike.catalog.milvus_store import ColumnFields, MilvusCategory, MilvusConnection
from lookalike.catalog.vector_store import Restriction
from supervisor.milvus_local import LocalMilvus

DIM = 2048


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.vector_stores", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=100_000, help="vectors in the category")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--milvus-uri", default="", help="a running Milvus; unset: start a local standalone")
    parser.add_argument("--milvus-index", default="FLAT", choices=sorted(milvus_store.INDEX_TYPES))
    parser.add_argument("--out", type=Path, default=Path("bench/out"))
    return parser.parse_args(argv)


def timed(search: object, queries: np.ndarray, k: int) -> tuple[list[list[int]], list[float]]:
    answers, times = [], []
    for query in queries:
        started = time.perf_counter()
        hits = search(query.reshape(1, -1), k, Restriction())  # type: ignore[operator]
        times.append((time.perf_counter() - started) * 1000)
        answers.append([label for label, _ in hits])
    return answers, times


def figures(times: list[float], answers: list[list[int]], exact: list[list[int]], k: int) -> dict[str, float]:
    ordered = sorted(times)
    recall = statistics.mean(len(set(a) & set(e)) / k for a, e in zip(answers, exact))
    return {"query_ms_p50": round(ordered[len(ordered) // 2], 3),
            "query_ms_p99": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 3),
            "recall_at_10": round(recall, 4)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    mixture = Mixture(DIM, latent=32, clusters=50, spread=1.0, noise=0.3)
    vectors = np.concatenate(list(mixture.chunks(args.size)))
    queries = mixture.draw(args.queries, stream=10_000)
    labels = np.arange(args.size, dtype=np.int64)
    report: dict[str, object] = {"size": args.size, "dim": DIM, "queries": args.queries,
                                 "vectors": "synthetic (bench.index_scale.Mixture)"}

    before = rss_mb([os.getpid()])
    faiss_index = CategoryIndex.build(vectors, labels, "Flat")
    faiss_rss = rss_mb([os.getpid()]) - before
    exact, faiss_times = timed(faiss_index.nearest, queries, args.k)
    report["faiss"] = {**figures(faiss_times, exact, exact, args.k), "similarity_rss_mib": round(faiss_rss, 1)}
    print(f"faiss:  {report['faiss']}", flush=True)

    with tempfile.TemporaryDirectory(prefix="bench-milvus-") as tmp:
        server = None if args.milvus_uri else LocalMilvus(Path(tmp)).start()
        try:
            connection = MilvusConnection(args.milvus_uri or server.uri, timeout_s=600)  # type: ignore[union-attr]
            items = [CatalogItem(label=int(n), id=f"p{n}", category="chair", name=f"p{n}", file=f"chair/{n}.jpg")
                     for n in labels]
            started = time.perf_counter()
            record = milvus_store.publish(connection, "bench", items, vectors, args.milvus_index)
            publish_s = time.perf_counter() - started
            assert record.collection is not None
            category = MilvusCategory(connection, record.collection, "chair", args.size, DIM, ColumnFields.of([]),
                                      record.search_parameters)
            timed(category.nearest, queries[:5], args.k)  # warm up
            answers, milvus_times = timed(category.nearest, queries, args.k)
            milvus_rss = rss_mb(process_tree(server.process.pid)) if server and server.process else None
            report["milvus"] = {**figures(milvus_times, answers, exact, args.k), "index": args.milvus_index,
                                "publish_s": round(publish_s, 1), "milvus_server_rss_mib": milvus_rss,
                                "similarity_rss_mib": 0.0}
            milvus_store.drop(connection, record.collection)
            connection.close()
        finally:
            if server is not None:
                server.stop()
    print(f"milvus: {report['milvus']}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "vector_store_report.json").write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out / 'vector_store_report.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
