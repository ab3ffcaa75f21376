"""`make bench-index`: one category grown to 10^5 and 10^6 synthetic vectors, Flat against IVF.

For each size it reports, for the exact `Flat` index (what the service builds today) and for
`IVF<nlist>,Flat` at several `nprobe`: single-query search latency (one query per call, as the
similarity service searches), the memory the index takes, its build time, and recall@10 against
the exact answer.

The vectors are synthetic (see `Mixture`); a query is a new draw from the same distribution, and
the exact answer is the Flat index's.

With `--filter-sizes` (default 10^5), the same indexes are searched again with a `where` filter
that lets `--filter-fraction` (default 1%) of the vectors through, as the similarity service
searches: an id selector inside Faiss, widening IVF's nprobe until k allowed vectors are found
(`CategoryIndex.search`). It reports how often all k came back, and recall against the exact
filtered answer.
The default is 256 dimensions, standing in for embeddings reduced by PCA, because 10^6 vectors
of 2048 floats are 8 GB, twice over once the exact index and the approximate one both exist.
Pass `--dim 2048` on a machine with the memory; Flat's latency and memory grow linearly in d.

Then the REDUCE part (`bench.index_reduce`): none, pca:256 and pca-whiten:256 against the 2048-d
embeddings, at `--reduce-sizes` (default 10^5), into bench/out/index_report.json. `--parts reduce`
runs it alone.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import faiss
import numpy as np

from lookalike.catalog.faiss_store import CategoryIndex, ivf_nprobe

CHUNK = 100_000


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.index_scale", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,1000000", help="vectors in the category, comma-separated")
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--latent", type=int, default=32, help="dimensions the synthetic vectors really vary in")
    parser.add_argument("--clusters", type=int, default=50, help="Gaussian clusters in the latent space")
    parser.add_argument("--spread", type=float, default=1.0, help="a cluster's standard deviation (centres: 1)")
    parser.add_argument("--noise", type=float, default=0.3, help="noise in every dimension, against a unit vector")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--nprobe", default="4,8,16,32,64")
    parser.add_argument("--filter-sizes", default="100000", help="sizes also searched with a filter ('' for none)")
    parser.add_argument("--filter-fraction", type=float, default=0.01, help="share of vectors the filter lets through")
    parser.add_argument("--threads", type=int, default=1,
                        help="Faiss OpenMP threads; 1 is what the similarity service runs (SIMILARITY_FAISS_THREADS)")
    parser.add_argument("--out", type=Path, default=Path("bench/out"))
    parser.add_argument("--parts", default="job,ivf,reduce",
                        help="job (the re-index job's peak RSS), ivf (Flat against IVF), reduce (REDUCE); any of them")
    from bench.index_memory import add_arguments as add_job_arguments
    from bench.index_reduce import add_arguments  # it imports this module

    add_arguments(parser)
    add_job_arguments(parser)
    return parser.parse_args(argv)


def say(message: str) -> None:
    print(f"[bench-index] {message}", flush=True)


def index_mb(index: faiss.Index) -> float:
    """What the index keeps in memory: the stored vectors, plus the ids and centroids for IVF."""
    if isinstance(index, faiss.IndexFlat):
        return index.ntotal * index.d * 4 / 2**20
    ivf = faiss.extract_index_ivf(index)
    return (ivf.ntotal * (ivf.code_size + 8) + ivf.quantizer.ntotal * ivf.d * 4) / 2**20


class Mixture:
    """Deterministic draws from the synthetic distribution: chunk `i` is the same in every call.

    Real embeddings vary along far fewer directions than they have dimensions, so points are
    drawn from Gaussian clusters in a `latent`-d space, projected into `dim` dimensions, given
    a little noise in every dimension, and normalised. Uniform noise in all `dim` dimensions
    would make every neighbour almost as far as any other, which no approximate index can
    search and no image model produces.
    """

    def __init__(self, dim: int, latent: int, clusters: int, spread: float, noise: float, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.projection = rng.standard_normal((latent, dim), dtype=np.float32) / math.sqrt(latent)
        self.centres = rng.standard_normal((clusters, latent), dtype=np.float32)
        self.dim, self.latent, self.spread, self.noise, self.seed = dim, latent, spread, noise, seed

    def draw(self, n: int, stream: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, stream])
        z = self.centres[rng.integers(0, len(self.centres), n)]
        z += self.spread * rng.standard_normal((n, self.latent), dtype=np.float32)
        x = normalised(z @ self.projection)
        x += rng.standard_normal((n, self.dim), dtype=np.float32) * (self.noise / math.sqrt(self.dim))
        return normalised(x)

    def chunks(self, total: int) -> Iterator[np.ndarray]:
        for i, start in enumerate(range(0, total, CHUNK)):
            yield self.draw(min(CHUNK, total - start), stream=i + 1)


def normalised(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x / np.linalg.norm(x, axis=1, keepdims=True), dtype=np.float32)


@dataclass
class Row:
    size: int
    index: str
    nprobe: int | None
    build_s: float
    memory_mb: float
    p50_ms: float
    p99_ms: float
    recall_at_k: float
    allowed: float = 1.0  # share of the vectors a filter lets through
    full_k: float = 1.0  # share of queries that got k results


def single_query_latencies(index: faiss.Index, queries: np.ndarray, k: int) -> tuple[np.ndarray, list[float]]:
    """One query per call, as the similarity service searches; returns the labels too."""
    labels, times = [], []
    for q in queries:
        started = time.perf_counter()
        _, found = index.search(q.reshape(1, -1), k)
        times.append((time.perf_counter() - started) * 1000)
        labels.append(found[0])
    return np.array(labels), times


def filtered_latencies(index: faiss.Index, queries: np.ndarray, k: int,
                       allowed: np.ndarray) -> tuple[np.ndarray, list[float], float]:
    """As the similarity service searches with a `where` filter; returns labels, times and the share with k results."""
    category = CategoryIndex(index)
    labels, times, full = [], [], 0
    for q in queries:
        started = time.perf_counter()
        found = category.search(q, k, allowed)
        times.append((time.perf_counter() - started) * 1000)
        full += len(found) == k
        labels.append([label for label, _ in found] + [-1] * (k - len(found)))
    return np.array(labels), times, full / len(queries)


def recall(found: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(e)) / len(e) for f, e in zip(found, exact)]))


def ivf_lists(size: int) -> int:
    """About 4·√N lists, a power of two: Faiss's usual starting point."""
    return 2 ** round(math.log2(4 * math.sqrt(size)))


def build(factory: str, mixture: Mixture, size: int) -> tuple[faiss.Index, float, float]:
    gc.collect()
    started = time.perf_counter()
    index = faiss.index_factory(mixture.dim, factory, faiss.METRIC_INNER_PRODUCT)
    if not index.is_trained:
        sample = mixture.draw(min(size, 40 * ivf_lists(size)), stream=0)
        index.train(sample)
        del sample
    for chunk in mixture.chunks(size):
        index.add(chunk)
    return index, time.perf_counter() - started, index_mb(index)


def measure_size(mixture: Mixture, size: int, args: argparse.Namespace) -> list[Row]:
    queries = mixture.draw(args.queries, stream=10**6)
    flat, build_s, memory = build("Flat", mixture, size)
    exact, times = single_query_latencies(flat, queries, args.k)
    rows = [Row(size, "Flat", None, build_s, memory, float(np.percentile(times, 50)),
                float(np.percentile(times, 99)), 1.0)]
    say(f"N={size:>9,} Flat: p50 {rows[0].p50_ms:.2f} ms, {memory:.0f} MB")
    filtered = size in [int(n) for n in args.filter_sizes.split(",") if n]
    if filtered:
        rng = np.random.default_rng(7)
        allowed = np.sort(rng.choice(size, max(args.k, round(size * args.filter_fraction)), replace=False))
        exact_filtered, times, full = filtered_latencies(flat, queries, args.k, allowed)
        rows.append(Row(size, "Flat", None, build_s, memory, float(np.percentile(times, 50)),
                        float(np.percentile(times, 99)), 1.0, args.filter_fraction, full))
        say(f"N={size:>9,} Flat filtered to {args.filter_fraction:.0%}: p50 {rows[-1].p50_ms:.2f} ms, "
            f"k results {full:.0%}")
    del flat
    factory = f"IVF{ivf_lists(size)},Flat"
    ivf, build_s, memory = build(factory, mixture, size)
    for nprobe in [int(p) for p in args.nprobe.split(",")]:
        faiss.extract_index_ivf(ivf).nprobe = nprobe
        found, times = single_query_latencies(ivf, queries, args.k)
        rows.append(Row(size, factory, nprobe, build_s, memory, float(np.percentile(times, 50)),
                        float(np.percentile(times, 99)), recall(found, exact)))
        say(f"N={size:>9,} {factory} nprobe={nprobe}: p50 {rows[-1].p50_ms:.2f} ms, "
            f"recall@{args.k} {rows[-1].recall_at_k:.3f}")
    if filtered:
        nprobe = ivf_nprobe(ivf_lists(size))  # what the indexing job saves with the index
        faiss.extract_index_ivf(ivf).nprobe = nprobe
        found, times, full = filtered_latencies(ivf, queries, args.k, allowed)
        rows.append(Row(size, factory, nprobe, build_s, memory, float(np.percentile(times, 50)),
                        float(np.percentile(times, 99)), recall(found, exact_filtered), args.filter_fraction, full))
        say(f"N={size:>9,} {factory} nprobe={nprobe}, widened by 1/sqrt(share allowed), filtered to "
            f"{args.filter_fraction:.0%}: "
            f"p50 {rows[-1].p50_ms:.2f} ms, k results {full:.0%}, recall@{args.k} {rows[-1].recall_at_k:.3f}")
    del ivf
    return rows


def as_markdown(rows: list[Row], args: argparse.Namespace) -> str:
    load = os.getloadavg()[0]
    lines = [f"{args.dim}-d synthetic vectors in one category, {args.queries} single-vector queries, "
             f"k={args.k}, Faiss threads {faiss.omp_get_max_threads()}, load average {load:.1f} "
             f"on {os.cpu_count()} CPUs{'' if load < (os.cpu_count() or 1) else ' (NOT quiet: timings are noise)'}.", "",
             f"| vectors | index | nprobe | filter lets through | build s | memory MB | p50 ms | p99 ms "
             f"| recall@{args.k} | got k |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r.size:,} | {r.index} | {r.nprobe or ''} | {'' if r.allowed == 1 else f'{r.allowed:.0%}'} "
                     f"| {r.build_s:.1f} | {r.memory_mb:.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.recall_at_k:.3f} "
                     f"| {r.full_k:.0%} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    faiss.omp_set_num_threads(args.threads)
    mixture = Mixture(args.dim, args.latent, args.clusters, args.spread, args.noise)
    parts = set(args.parts.split(","))
    if "job" in parts:
        from bench.index_memory import run as run_job

        run_job(args)
    if "reduce" in parts:
        from bench.index_reduce import run as run_reduce

        run_reduce(args)
    if "ivf" not in parts:
        return 0
    rows: list[Row] = []
    for size in [int(s) for s in args.sizes.split(",")]:
        rows += measure_size(mixture, size, args)
    settings = {k: str(v) for k, v in vars(args).items()}
    (args.out / "index_scale.json").write_text(json.dumps(
        {"settings": settings, "faiss_threads": faiss.omp_get_max_threads(), "rows": [asdict(r) for r in rows]},
        indent=2) + "\n")
    markdown = as_markdown(rows, args)
    (args.out / "index_scale.md").write_text(markdown)
    print(markdown)
    say(f"wrote {args.out / 'index_scale.json'} and {args.out / 'index_scale.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
