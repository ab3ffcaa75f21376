"""How close the indexing job comes to the bare network: embedding images/s, job vs. model.

    python -m bench.indexing_throughput --catalog ../shared/furniture/bulk --weights imagenet

`bare`: `Embedder.embed_batch` on inputs decoded beforehand (the network alone, nothing else).
`job`:  `build_index` on the same photos with an empty cache: reading, hashing, decoding on
        threads, thumbnails, cache commits, all overlapped with the same forward passes.
The bare model is timed before and after the job, and their mean is used, so a machine whose
load drifts during the run is at least visible in the two bare figures. Not part of `make test`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from indexing.build import BuildPlan, build_index
from indexing.catalog import scan_catalog
from lookalike.catalog.layout import INT8_MODEL
from lookalike.contracts import PRECISION_SETTINGS
from lookalike.log_lines import configure_logging
from lookalike.settings import MAX_PIXELS
from lookalike.vision.embedder import Embedder
from lookalike.vision.int8_engine import Int8Embedder
from lookalike.vision.preprocess import load_model_input


def bare_rate(embedder: Embedder | Int8Embedder, inputs: list[np.ndarray], batch_size: int) -> float:
    """Images/s of the forward pass alone, after one warm-up batch."""
    embedder.embed_batch(inputs[:batch_size])
    started = time.perf_counter()
    for i in range(0, len(inputs), batch_size):
        embedder.embed_batch(inputs[i:i + batch_size])
    return len(inputs) / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.indexing_throughput", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--catalog", type=Path, default=Path("../shared/furniture/bulk"))
    parser.add_argument("--weights", default="auto")
    parser.add_argument("--precision", default="auto", choices=list(PRECISION_SETTINGS),
                        help="int8: the job quantises on these photos, and the bare figures are its int8 model's")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--limit", type=int, default=0, help="use only the first N photos (0: all)")
    parser.add_argument("--out", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    configure_logging()

    embedder = Embedder(args.weights, args.precision)
    scan = scan_catalog(args.catalog)
    entries = scan.entries[: args.limit] if args.limit else scan.entries
    inputs = [load_model_input((scan.root / e.file).read_bytes(), embedder.preprocessing, max_pixels=MAX_PIXELS)
              for e in entries]
    model: Embedder | Int8Embedder = embedder
    before = bare_rate(embedder, inputs, args.batch_size) if args.precision != "int8" else None

    with tempfile.TemporaryDirectory(prefix="throughput-") as tmp:
        catalog = Path(tmp) / "catalog"
        for entry in entries:  # the same photos as the bare run, linked, not copied
            (catalog / entry.file).parent.mkdir(parents=True, exist_ok=True)
            (catalog / entry.file).symlink_to((scan.root / entry.file).resolve())
        summary = build_index(BuildPlan(catalog, Path(tmp) / "index", embedder=embedder, batch_size=args.batch_size,
                              workers=args.workers, keep=1))
        if summary.precision == "int8":  # the job's own int8 model is the bare one; it exists only now
            model = Int8Embedder(summary.version_dir / INT8_MODEL, embedder.info, embedder.preprocessing)
            print(f"int8 gate: {summary.precision_reason}")
        if before is None:
            before = bare_rate(model, inputs, args.batch_size)
        job = summary.embedded / summary.embed_seconds
        after = bare_rate(model, inputs, args.batch_size)

    bare = statistics.mean([before, after])
    figures = {"photos": len(inputs), "weights": embedder.info.weights, "precision": model.precision,
               "batch_size": args.batch_size, "workers": args.workers, "bare_images_per_s_before": round(before, 2),
               "bare_images_per_s_after": round(after, 2), "job_images_per_s": round(job, 2),
               "job_vs_bare": round(job / bare, 3)}
    print(f"bare model: {before:.1f} then {after:.1f} images/s; job: {job:.1f} images/s "
          f"({100 * job / bare:.0f}% of the bare model) on {len(inputs)} photos, "
          f"{model.precision}, batch {args.batch_size}, {args.workers} decode workers")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
