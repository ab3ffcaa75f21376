"""`make bench`: the bare model and the whole pipeline, measured side by side in one run.

  1. an index built from the catalogue with the same weights (with PRECISION=int8 or auto, the
     job quantises and gates an int8 model into it);
  2. the bare model in this process: images/s at batch 1, 2, 4, 8, 16 (the yardstick: the served
     precision), the index version's graphs through ONNX Runtime at fp32 and int8
     (`model_img_s_by_precision`) and against the fused torch fp32 graph (`model_img_s_by_runtime`);
  3. bf16 against fp32 in the torch model (the evaluation's), for the loaded weights: cosine per
     image, same top-1 per query;
  4. the three services started as `make run` starts them, then the gateway loaded at each
     concurrency with catalogue-size and with 12 MP phone-size photos;
  5. steering: photos searched once and steered six times by their handle (forward passes, latency
     ratio, CPU per steered search), and the bytes the page uploads for a 12 MP photo, in Chromium;
  6. the similarity service's search alone, and each service's peak RSS after the load (`rss_peak_mb`);
  7. each service's start: process start to its first 200 on /readyz, with the index present (`ready_s`).
  8. search analytics on against off at the highest concurrency, alternating (`analytics_throughput_ratio`).

Writes bench/out/report.json and bench/out/report.md. Durations and sizes are flags, so a smoke
run takes a minute and a full one a few minutes; figures are only worth quoting from a quiet machine.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import secrets
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import torch

from bench.analytics_load import AnalyticsFigures, measure_analytics
from bench.load import LoadFigures, multipart_upload, run_load
from bench.machine import cpu_name
from bench.model import ModelFigures, PrecisionAgreement, compare_precisions, measure_throughput
from bench.photos import catalogue_size, phone_size, query_files
from bench.process_memory import peak_rss_mb
from bench.report import LOAD_GENERATOR, Report, write_report
from bench.runtimes import measure_runtimes, ready_seconds
from bench.steering import SteeringFigures, measure_steering, page_upload_bytes
from indexing.build import BuildPlan, build_index
from indexing.catalog import scan_catalog
from lookalike.catalog.layout import IndexLayout, read_manifest
from lookalike.contracts import PRECISION_SETTINGS, ClassifyResponse, SearchRequest
from lookalike.settings import ModelSettings
from lookalike.vision.embedder import Embedder
from lookalike.vision.onnx_engine import OnnxEmbedder
from lookalike.vision.preprocess import load_model_input
from supervisor.stack import loopback_stack

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "furniture"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--catalog", type=Path, default=SHARED / "catalog")
    parser.add_argument("--queries", type=Path, default=SHARED / "queries")
    model = ModelSettings()
    parser.add_argument("--weights", default=model.weights)
    parser.add_argument("--precision", default=model.precision, choices=list(PRECISION_SETTINGS))
    parser.add_argument("--out", type=Path, default=Path("bench/out"))
    parser.add_argument("--index", type=Path, default=None,
                        help="serve this existing index (built with the same weights) instead of building one")
    parser.add_argument("--catalog-limit", type=int, default=0,
                        help="use only this many catalogue images per category (0: all)")
    parser.add_argument("--model-seconds", type=float, default=8.0, help="per batch size")
    parser.add_argument("--batches", default="1,2,4,8,16", help="batch sizes for the bare model (1 is always added)")
    parser.add_argument("--precision-queries", type=int, default=200,
                        help="queries for the bf16-vs-fp32 check against the catalogue (0 skips it)")
    parser.add_argument("--photos", type=int, default=16, help="distinct photos uploaded, per kind")
    parser.add_argument("--concurrency", default="1,4,16")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured time per load level")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured time before each load level")
    parser.add_argument("--search-requests", type=int, default=300)
    parser.add_argument("--steer-photos", type=int, default=8, help="photos searched once and steered six times")
    return parser.parse_args(argv)


def say(message: str) -> None:
    print(f"[bench] {message}", flush=True)


def decode_all(embedder: Embedder, files: list[Path]) -> list[np.ndarray]:
    prep = embedder.preprocessing
    with ThreadPoolExecutor(max_workers=len(os.sched_getaffinity(0))) as pool:
        return list(pool.map(lambda f: load_model_input(f.read_bytes(), prep, max_pixels=60_000_000), files))


def limited_catalog(catalog: Path, limit: int, out: Path) -> Path:
    """The first `limit` images of each category, linked into a folder of their own (no copies)."""
    if not limit:
        return catalog
    root = out / "catalog"
    per_category: dict[str, int] = {}
    for entry in scan_catalog(catalog).entries:
        if per_category.get(entry.category, 0) >= limit:
            continue
        per_category[entry.category] = per_category.get(entry.category, 0) + 1
        target = root / entry.file
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            target.symlink_to((catalog / entry.file).resolve())
    return root


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure_bare(args: argparse.Namespace, model: Embedder | OnnxEmbedder, photos: list[np.ndarray]) -> ModelFigures:
    batches = sorted({1, *(int(b) for b in args.batches.split(","))})  # batch 1 is the single-request yardstick
    runtime = "torch" if isinstance(model, Embedder) else "onnxruntime"
    say(f"bare model ({model.info.weights}, {runtime} {model.precision}, {torch.get_num_threads()} threads): "
        f"batches {batches}, {args.model_seconds:.0f} s each")
    figures = measure_throughput(model, photos, batches, args.model_seconds)
    for size, rate in figures.img_s.items():
        say(f"  batch {size:>2}: {rate:6.1f} img/s")
    return figures


def measure_model(args: argparse.Namespace, embedder: Embedder, index: Path, catalog_root: Path
                  ) -> tuple[dict[str, ModelFigures], dict[str, ModelFigures], PrecisionAgreement | None]:
    """(by runtime, by served precision, bf16-vs-fp32 agreement of the torch model)."""
    photos = decode_all(embedder, query_files(args.queries, 64))
    by_runtime = measure_runtimes(index, args.weights, photos, lambda model, images: measure_bare(args, model, images))
    by_precision = {precision: by_runtime[f"onnxruntime_{precision}"] for precision in ("fp32", "int8")
                    if f"onnxruntime_{precision}" in by_runtime}
    gc.collect()
    agreement = None
    if args.precision_queries:
        scan = scan_catalog(catalog_root)
        catalog = decode_all(embedder, [scan.root / e.file for e in scan.entries])
        queries = decode_all(embedder, query_files(args.queries, args.precision_queries))
        say(f"bf16 vs fp32 (torch): {len(queries)} queries against {len(catalog)} catalogue images")
        agreement = compare_precisions(args.weights, catalog, queries)
        say(f"  min cosine {agreement.min_cosine:.4f}, same top-1 {agreement.same_top1:.1%}")
    return by_runtime, by_precision, agreement


async def search_alone(similarity: str, gateway_photo: bytes, classifier: str, requests: int) -> LoadFigures:
    """POST /v1/search straight to the similarity service with a real embedding, one at a time."""
    async with httpx.AsyncClient(timeout=30) as http:
        classified = ClassifyResponse.model_validate_json(
            (await http.post(f"{classifier}/v1/classify", content=gateway_photo)).content)
        body = SearchRequest(embedding=classified.embedding, category=classified.category, k=10).model_dump()
        latencies, errors = [], 0
        started = time.perf_counter()
        for _ in range(requests):
            sent = time.perf_counter()
            response = await http.post(f"{similarity}/v1/search", json=body)
            latencies.append((time.perf_counter() - sent) * 1000)
            errors += response.status_code != 200
        return LoadFigures(1, time.perf_counter() - started, requests - errors, errors, latencies)


def run_pipeline(args: argparse.Namespace, index: Path, model_id: str
                 ) -> tuple[dict[str, list[LoadFigures]], LoadFigures, dict[str, float], str, SteeringFigures,
                            AnalyticsFigures]:
    files = query_files(args.queries, args.photos)
    say(f"making {len(files)} phone-size (12 MP) JPEGs from {args.queries}")
    kinds = {"catalogue-size": catalogue_size(files), "phone-size": phone_size(files)}
    # The load generator is one address: the gateway's per-address fair shares would measure themselves.
    # The gateway's /metrics (analytics entries written and dropped) asks for an operator token: one for this run.
    operator_token = secrets.token_urlsafe(24)
    env = {"INDEX": str(index), "WEIGHTS": args.weights, "PRECISION": args.precision, "LOG_LEVEL": "WARNING",
           "GATEWAY_SEARCHES_PER_MINUTE": "0", "LOOKALIKE_ADMIN_TOKEN": operator_token}
    with loopback_stack(env, {"classifier": "/healthz", "similarity": "/healthz", "gateway": "/readyz"}) as stack:
        processes, gateway = stack.processes, stack.url("gateway")
        served = httpx.get(f"{stack.url('classifier')}/readyz").json()["model"]
        if served["model_id"] != model_id:
            raise RuntimeError(f"the classifier serves {served['model_id']}, the bare model was {model_id}")
        say(f"the classifier serves {served['precision']}")
        def cpu_by_process() -> dict[str, float]:
            return {**{name: cpu_seconds(p.pid) for name, p in processes.items()},
                    LOAD_GENERATOR: time.process_time()}

        levels: dict[str, list[LoadFigures]] = {}
        for kind, images in kinds.items():
            uploads = [multipart_upload(image) for image in images]
            for concurrency in [int(c) for c in args.concurrency.split(",")]:
                figures = asyncio.run(run_load(f"{gateway}/api/v1/search", uploads, concurrency,
                                               args.seconds, args.warmup, cpu_by_process))
                levels.setdefault(kind, []).append(figures)
                say(f"  {kind:<14} c={concurrency:<3} {figures.img_s:6.1f} img/s  p50 {figures.percentile(50):7.1f} ms"
                    f"  p99 {figures.percentile(99):7.1f} ms  errors {figures.errors}")
        say("steering: each photo searched once, then steered six times by its handle")
        steering = measure_steering(gateway, stack.url("classifier"),
                                    kinds["catalogue-size"][:args.steer_photos], cpu_by_process, args.seconds,
                                    args.warmup)
        steering.upload_bytes_12mp_page = page_upload_bytes(gateway, kinds["catalogue-size"][0])
        say(f"  forward passes for one photo and six steers: {steering.forward_passes}; steered/first "
            f"{steering.latency_ratio:.3f}; page upload of a 12 MP photo: {steering.upload_bytes_12mp_page} bytes")
        search = asyncio.run(search_alone(stack.url("similarity"), kinds["catalogue-size"][0],
                                          stack.url("classifier"), args.search_requests))
        say(f"  similarity search alone: p50 {search.percentile(50):.2f} ms, p99 {search.percentile(99):.2f} ms")
        top = max(int(c) for c in args.concurrency.split(","))
        say(f"search analytics: on against off at c={top}, alternating")
        analytics = measure_analytics(gateway, operator_token, [multipart_upload(i) for i in kinds["catalogue-size"]], top,
                                      args.seconds, args.warmup, cpu_by_process)
        say(f"  on/off throughput {analytics.ratio:.3f}; log entries written {analytics.written:.0f}, "
            f"dropped {analytics.dropped:.0f}")
        rss = {name: round(peak_rss_mb(p.pid), 1) for name, p in processes.items()}
        say(f"  peak RSS after the load (MB): {rss}")
        return levels, search, rss, served["precision"], steering, analytics


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    load_at_start = os.getloadavg()[0]
    torch.set_num_threads(len(os.sched_getaffinity(0)))  # as the classifier service does
    # Builds the index (the job exports fp32 whatever PRECISION asks); the services run its ONNX graphs.
    embedder = Embedder(args.weights, args.precision, torch_precision="fp32")
    catalog = limited_catalog(args.catalog, args.catalog_limit, args.out)
    index = args.index
    if index is None:
        index = args.out / "index"
        say(f"building an index of {catalog} into {index} (PRECISION={args.precision})")
        summary = build_index(BuildPlan(catalog, index, embedder=embedder))
        say(f"  catalogue embedded at {summary.precision}: {summary.precision_reason}")
    served_here = read_manifest(IndexLayout(index).require_current()).model.precision
    by_runtime, by_precision, agreement = measure_model(args, embedder, index, catalog)
    yardstick = by_precision.get(served_here) or by_precision["fp32"]
    model_id = embedder.info.model_id
    report = Report(weights=embedder.info.weights, precision=args.precision, device="cpu",
                    cpu=cpu_name(), cores=len(os.sched_getaffinity(0)),
                    model=yardstick, agreement=agreement, by_precision=by_precision, by_runtime=by_runtime)
    del embedder
    gc.collect()
    env = {"INDEX": str(index), "WEIGHTS": args.weights, "PRECISION": args.precision, "LOG_LEVEL": "WARNING"}
    report.ready_s = ready_seconds(env)
    say(f"ready (process start to the first 200 on /readyz), s: {report.ready_s}")
    (report.levels, report.search, report.rss_mb, report.served_precision, report.steering,
     report.analytics) = run_pipeline(args, index, model_id)
    report.load_average = [round(load_at_start, 2), round(os.getloadavg()[0], 2)]
    json_path, md_path = write_report(report, args.out)
    print(md_path.read_text())
    say(f"wrote {json_path} and {md_path}")
    if not report.quiet:
        say(f"!!! load average {report.load_average} on {report.cores} cores: these timings are noise !!!")
    if report.weights == "random":
        say("!!! RANDOM WEIGHTS: speed figures are real, but the bf16-vs-fp32 agreement is not for real weights !!!")
    return 0 if report.errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
