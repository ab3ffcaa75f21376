"""`python -m indexing --catalog DIR --index DIR --weights MODE`: build and publish a new index version."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from classifier_service.weights import WeightsUnavailable
from indexing.build import BuildSummary, EmptyCatalog, build_index
from indexing.catalog import default_catalog
from indexing.notify import notify_reload
from lookalike.serving import configure_logging


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m indexing", description=__doc__)
    parser.add_argument("--catalog", type=Path, default=None,
                        help="folder with one sub-folder of images per category, and optionally products.csv "
                             "(default: $CATALOG, else reference_images, else the demo catalogue while that is empty)")
    parser.add_argument("--index", type=Path, default=Path(os.environ.get("INDEX") or "var/index"),
                        help="index root (versions + current); default $INDEX or var/index")
    parser.add_argument("--weights", default=os.environ.get("WEIGHTS") or "auto",
                        help="imagenet, random, auto, or a path to a .pth state dict; default $WEIGHTS or auto")
    parser.add_argument("--precision", default=os.environ.get("PRECISION") or "auto", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2, help="threads decoding images ahead of the network")
    parser.add_argument("--index-type", default="Flat", help="Faiss factory string, e.g. Flat, HNSW32, IVF256,Flat")
    parser.add_argument("--notify", nargs="*", default=[], metavar="URL",
                        help="service base URLs to ask to reload, e.g. http://127.0.0.1:8001")
    return parser.parse_args(argv)


def format_summary(s: BuildSummary) -> str:
    rate = s.embedded / s.embed_seconds if s.embed_seconds else 0.0
    lines = [f"Indexed {s.embedded} images in {len(s.per_category)} categories in {s.seconds:.1f} s "
             f"({rate:.1f} images/s embedding), weights={s.weights}"]
    if s.weights == "random":
        lines.append("  !!! RANDOM WEIGHTS: categories and similarities are meaningless; for tests and demos only !!!")
    lines += [f"  {name:<16} {count:>6}" for name, count in s.per_category.items()]
    accuracy = f"{s.cv_accuracy:.3f} ({s.folds}-fold cross-validated)" if s.cv_accuracy is not None else "n/a (too few images)"
    lines.append(f"Category head accuracy: {accuracy}")
    if s.skipped:
        lines.append(f"Skipped {len(s.skipped)}:")
        lines += [f"  {item.file}: {item.reason}" for item in s.skipped]
    else:
        lines.append("Skipped 0")
    lines.append(f"Published version {s.version} at {s.version_dir}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging()
    if args.catalog is None:
        args.catalog, note = default_catalog()
        if note:
            print(note)
    try:
        summary = build_index(args.catalog, args.index, args.weights, precision=args.precision,
                              batch_size=args.batch_size, workers=args.workers, index_type=args.index_type)
    except (EmptyCatalog, WeightsUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_summary(summary))
    for line in notify_reload(args.notify):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
