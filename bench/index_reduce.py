"""`make bench-index`, REDUCE part: what pca:256 and pca-whiten:256 cost and save against the 2048-d embeddings.

At each size (default 10^5; `--reduce-sizes 100000,1000000` for 10^6) of one category, for each
reduction: bytes per vector in a flat index, build time (learning the projection, projecting,
adding), single-query p50 (projecting the query, then searching, as the similarity service
does), and recall@10 of the reduced search against the exact 2048-d search.

The vectors: a category's real catalogue embeddings first, as far as they go (with whatever
weights `--weights` gives; here `random`, so they all lie within cos 0.998 of each other and say
nothing about a trained model), then draws from the same synthetic mixture as the Flat/IVF part
(`bench.index_scale.Mixture`, at 2048 dimensions). Queries are fresh synthetic draws. The report
says how many of each there were.

Memory stays at one index at a time: the exact answer is found chunk by chunk while the reduced
indexes fill, and the 2048-d flat index (8 GB at 10^6) is built last, alone.
"""

from __future__ import annotations

import argparse
import csv
import gc
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from bench.index_scale import CHUNK, Mixture, normalised, say
from bench.machine import cpu_name
from lookalike.catalog.projection import Components, Projection, Reduction
from lookalike.contracts import EMBEDDING_DIM
from lookalike.settings import MAX_PIXELS

DEFAULT_REDUCTIONS = "none,pca:256,pca-whiten:256"
LEARN_ON = 100_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("REDUCE part")
    group.add_argument("--reduce-sizes", default="100000",
                       help="vectors in the category, comma-separated ('' to skip); 1000000 needs about 10 GB")
    group.add_argument("--reductions", default=DEFAULT_REDUCTIONS)
    group.add_argument("--reduce-queries", type=int, default=200)
    group.add_argument("--exact-latency-queries", type=int, default=50,
                       help="single queries timed on the 2048-d flat index (each scans all of it)")
    group.add_argument("--catalog", type=Path, default=Path("../shared/furniture/catalog"),
                       help="where the real embeddings come from ('' for synthetic only)")
    group.add_argument("--category", default="chair")
    group.add_argument("--weights", default="random", help="weights that embed the catalogue photos")


@dataclass
class ReduceRow:
    size: int
    reduce: str
    dim: int
    bytes_per_vector: int
    learn_s: float
    build_s: float
    p50_ms: float
    recall_at_10: float


def catalogue_embeddings(catalog: Path, category: str, weights: str) -> np.ndarray:
    """The category's photos embedded as the indexing job embeds them, L2-normalised, in catalogue order."""
    from lookalike.vision.embedder import Embedder
    from lookalike.vision.preprocess import decode_image, to_model_input

    if not (catalog / "products.csv").is_file():
        return np.zeros((0, EMBEDDING_DIM), np.float32)
    with open(catalog / "products.csv", newline="") as fh:
        files = [catalog / r["file"] for r in csv.DictReader(fh) if r["category"] == category]
    embedder = Embedder(weights, "fp32")
    prep = embedder.preprocessing
    rows = []
    for start in range(0, len(files), 16):
        inputs = [to_model_input(decode_image(f.read_bytes(), min_side=prep.resize, max_pixels=MAX_PIXELS), prep)
                  for f in files[start:start + 16]]
        rows.append(embedder.embed_batch(inputs))
    return normalised(np.concatenate(rows)) if rows else np.zeros((0, EMBEDDING_DIM), np.float32)


class Vectors:
    """`size` vectors: the real ones first, then synthetic chunks; chunk i is the same in every pass."""

    def __init__(self, real: np.ndarray, mixture: Mixture, size: int) -> None:
        self.real, self.mixture, self.size = real[:size], mixture, size

    def chunks(self) -> list[tuple[int, int]]:
        return [(start, min(CHUNK, self.size - start)) for start in range(0, self.size, CHUNK)]

    def chunk(self, start: int, n: int) -> np.ndarray:
        synthetic = self.mixture.draw(n, stream=start // CHUNK + 1)
        if start < len(self.real):
            real = self.real[start:start + n]
            synthetic[:len(real)] = real
        return synthetic

    def sample(self, n: int) -> np.ndarray:
        """What the projection is learned on: the first chunks, as the job learns on the catalogue."""
        return np.concatenate([self.chunk(s, c) for s, c in self.chunks() if s < n])[:n]


def exact_top(vectors: Vectors, queries: np.ndarray, k: int, add: list[tuple[faiss.Index, Projection]],
              add_s: list[float]) -> np.ndarray:
    """The exact 2048-d top k of each query, chunk by chunk; each chunk also goes, projected, into `add`'s
    indexes, the seconds that took (projecting and adding) summed into `add_s`."""
    best_scores = np.full((len(queries), k), -np.inf, np.float32)
    best_labels = np.full((len(queries), k), -1, np.int64)
    for start, n in vectors.chunks():
        chunk = vectors.chunk(start, n)
        scores = queries @ chunk.T
        top = np.argpartition(-scores, min(k, n - 1), axis=1)[:, :k]
        merged_scores = np.concatenate([best_scores, np.take_along_axis(scores, top, axis=1)], axis=1)
        merged_labels = np.concatenate([best_labels, top + start], axis=1)
        order = np.argsort(-merged_scores, axis=1)[:, :k]
        best_scores = np.take_along_axis(merged_scores, order, axis=1)
        best_labels = np.take_along_axis(merged_labels, order, axis=1)
        for at, (index, projection) in enumerate(add):
            started = time.perf_counter()
            index.add(projection.apply(chunk))
            add_s[at] += time.perf_counter() - started
        del chunk, scores
    return best_labels


def timed_queries(index: faiss.Index, queries: np.ndarray, k: int,
                  projection: Projection | None) -> tuple[np.ndarray, list[float]]:
    labels, times = [], []
    for q in queries:
        started = time.perf_counter()
        vector = projection.apply(q) if projection is not None else q.reshape(1, -1)
        _, found = index.search(vector, k)
        times.append((time.perf_counter() - started) * 1000)
        labels.append(found[0])
    return np.array(labels), times


def recall(found: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(e)) / len(e) for f, e in zip(found, exact)]))


def measure(vectors: Vectors, reductions: list[Reduction], queries: np.ndarray, args: argparse.Namespace,
            k: int = 10) -> list[ReduceRow]:
    rows = []
    reduced = [r for r in reductions if r.kind is not None]
    learned: list[tuple[Reduction, Projection, float]] = []
    sample = vectors.sample(min(LEARN_ON, vectors.size))
    started = time.perf_counter()
    components = Components.of(sample)  # what the job computes once per build
    components_s = time.perf_counter() - started
    for reduction in reduced:
        started = time.perf_counter()
        projection = Projection.learn(sample, reduction, components)
        learned.append((reduction, projection, components_s + time.perf_counter() - started))
    del sample
    indexes = [faiss.IndexFlatIP(p.dim) for _, p, _ in learned]
    add_s = [0.0] * len(learned)
    exact = exact_top(vectors, queries, k, list(zip(indexes, (p for _, p, _ in learned))), add_s)
    for (reduction, projection, learn_s), index, fill_s in zip(learned, indexes, add_s):
        found, times = timed_queries(index, queries, k, projection)
        rows.append(ReduceRow(vectors.size, str(reduction), projection.dim, 4 * projection.dim, learn_s,
                              learn_s + fill_s, float(np.percentile(times, 50)),
                              recall(found, exact)))
        say(f"N={vectors.size:>9,} {reduction}: {4 * projection.dim} B/vector, p50 {rows[-1].p50_ms:.2f} ms, "
            f"recall@10 {rows[-1].recall_at_10:.3f}")
    del indexes
    gc.collect()
    if any(r.kind is None for r in reductions):
        flat = faiss.IndexFlatIP(EMBEDDING_DIM)
        build_s = 0.0
        for start, n in vectors.chunks():
            chunk = vectors.chunk(start, n)
            started = time.perf_counter()
            flat.add(chunk)
            build_s += time.perf_counter() - started
        found, times = timed_queries(flat, queries[:args.exact_latency_queries], k, None)
        rows.insert(0, ReduceRow(vectors.size, "none", EMBEDDING_DIM, 4 * EMBEDDING_DIM, 0.0, build_s,
                                 float(np.percentile(times, 50)), recall(found, exact[:len(found)])))
        say(f"N={vectors.size:>9,} none: {4 * EMBEDDING_DIM} B/vector, p50 {rows[0].p50_ms:.2f} ms")
        del flat
        gc.collect()
    return rows


def run(args: argparse.Namespace) -> dict[str, object]:
    sizes = [int(s) for s in args.reduce_sizes.split(",") if s]
    if not sizes:
        return {}
    reductions = [Reduction.parse(r) for r in args.reductions.split(",")]
    real = (catalogue_embeddings(args.catalog, args.category, args.weights) if str(args.catalog) not in ("", ".")
            else np.zeros((0, EMBEDDING_DIM), np.float32))
    if not len(real):
        args.weights = "no"
    say(f"REDUCE: {len(real)} real {args.category} embeddings ({args.weights} weights), the rest synthetic")
    mixture = Mixture(EMBEDDING_DIM, args.latent, args.clusters, args.spread, args.noise)
    queries = mixture.draw(args.reduce_queries, stream=10**6)
    rows: list[ReduceRow] = []
    for size in sizes:
        rows += measure(Vectors(real, mixture, size), reductions, queries, args)
    report: dict[str, object] = {
        "reduce_bytes_per_vector": {r.reduce: r.bytes_per_vector for r in rows},
        "reduce_recall_at_10": {spec: {str(r.size): round(r.recall_at_10, 4) for r in rows if r.reduce == spec}
                                for spec in dict.fromkeys(r.reduce for r in rows)},
        "reduce_query_ms_p50": {spec: {str(r.size): round(r.p50_ms, 3) for r in rows if r.reduce == spec}
                                for spec in dict.fromkeys(r.reduce for r in rows)},
        "reduce_build_s": {spec: {str(r.size): round(r.build_s, 2) for r in rows if r.reduce == spec}
                           for spec in dict.fromkeys(r.reduce for r in rows)},
        "reduce_rows": [asdict(r) for r in rows],
        "reduce_data": {
            "real_vectors": len(real), "real_source": f"{args.catalog}/{args.category} embedded with "
            f"{args.weights} weights" + (" (random: all within cos 0.998, they test the harness only)"
                                         if args.weights == "random" else ""),
            "synthetic": f"bench.index_scale.Mixture at {EMBEDDING_DIM}-d, latent {args.latent}, {args.clusters} "
                         f"clusters, noise {args.noise}: every vector after the real ones, and all the queries",
            "queries": args.reduce_queries, "exact_latency_queries": args.exact_latency_queries,
            "cpu": cpu_name(), "cpus": os.cpu_count(), "faiss_threads": faiss.omp_get_max_threads(),
            "load_average": os.getloadavg()[0],
            "note": "build_s: adding the vectors to a flat index; for a reduction also learning it (on at most "
                    "100,000 vectors) and projecting them. Drawing the synthetic vectors is not counted. p50 "
                    "includes projecting the query. pca-whiten changes the similarity on purpose (every kept "
                    "direction weighs the same), so its recall against the raw cosine is not a quality figure.",
        },
    }
    path = args.out / "index_report.json"
    path.write_text(json.dumps(merged(json.loads(path.read_text()) if path.is_file() else {}, report), indent=2) + "\n")
    print(as_markdown(rows, report))
    say(f"wrote {path}")
    return report


def merged(previous: dict[str, Any], report: dict[str, object]) -> dict[str, object]:
    """The report over an earlier one: sizes measured now replace theirs, other sizes are kept (10^6 runs apart)."""
    out: dict[str, object] = {**previous}
    for key, value in report.items():
        before = previous.get(key)
        if key == "reduce_rows" and isinstance(before, list) and isinstance(value, list):
            now = {(r["size"], r["reduce"]) for r in value}
            out[key] = [r for r in before if (r["size"], r["reduce"]) not in now] + value
        elif key.startswith("reduce_") and key != "reduce_bytes_per_vector" and isinstance(before, dict) \
                and isinstance(value, dict) and key != "reduce_data":
            out[key] = {spec: {**before.get(spec, {}), **sizes} for spec, sizes in value.items()}
        else:
            out[key] = value
    return out


def as_markdown(rows: list[ReduceRow], report: dict[str, object]) -> str:
    data = report["reduce_data"]
    assert isinstance(data, dict)
    lines = [f"One category: {data['real_vectors']} real embeddings ({data['real_source']}), the rest synthetic; "
             f"{data['queries']} synthetic queries; {data['cpu']}, {data['cpus']} CPUs, Faiss threads "
             f"{data['faiss_threads']}, load average {data['load_average']:.1f}.", "",
             "| vectors | reduce | bytes/vector | build s | query p50 ms | recall@10 vs 2048-d exact |",
             "|---:|---|---:|---:|---:|---:|"]
    lines += [f"| {r.size:,} | {r.reduce} | {r.bytes_per_vector:,} | {r.build_s:.1f} | {r.p50_ms:.2f} "
              f"| {r.recall_at_10:.3f} |" for r in rows]
    return "\n".join(lines) + "\n"
