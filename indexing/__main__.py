"""The indexing job's command line.

    python -m indexing --catalog DIR --index DIR --weights MODE [--keep N] [--notify URL...]
    python -m indexing rollback --index DIR [--to VERSION] [--notify URL...]
    python -m indexing versions --index DIR
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from pathlib import Path

from indexing.build import BuildSummary, Int8Options, build_index
from indexing.catalog import default_catalog
from indexing.notify import notify_reload
from indexing.quantise_gate import GateThresholds
from indexing.self_eval import describe, describe_categories
from indexing.settings import IndexingSettings
from indexing.versions import rollback
from lookalike.catalog.layout import IndexLayout, read_manifest
from lookalike.catalog.projection import REDUCE_HELP
from lookalike.errors import JobError
from lookalike.serving import configure_logging
from lookalike.vision.precision import PRECISIONS, gate_summary

DEFAULT_KEEP = 3


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def parse_args(argv: list[str] | None = None, settings: IndexingSettings | None = None) -> argparse.Namespace:
    settings = settings or IndexingSettings()
    parser = argparse.ArgumentParser(prog="python -m indexing", description="Build and publish a new index version.")
    parser.add_argument("--catalog", type=Path, default=None,
                        help="folder with one sub-folder of images per category, and optionally products.csv "
                             "(default: $CATALOG, else reference_images, else the demo catalogue while that is empty)")
    parser.add_argument("--index", type=Path, default=settings.index,
                        help="index root (versions + current); default $INDEX or var/index")
    parser.add_argument("--weights", default=settings.weights,
                        help="imagenet, random, auto, or a path to a .pth state dict; default $WEIGHTS or auto")
    parser.add_argument("--precision", default=settings.precision, choices=list(PRECISIONS),
                        help="int8 quantises on the catalogue and serves it even if its gate fails (loudly); auto "
                             "serves int8 where the gate passes, else bf16 where the CPU is fast at it, else fp32")
    parser.add_argument("--int8-calibration-images", type=positive, default=settings.int8_calibration_images)
    parser.add_argument("--int8-gate-images", type=positive, default=settings.int8_gate_images)
    parser.add_argument("--int8-min-cosine", type=float, default=settings.int8_min_cosine)
    parser.add_argument("--int8-min-top10-overlap", type=float, default=settings.int8_min_top10_overlap)
    parser.add_argument("--int8-min-head-agreement", type=float, default=settings.int8_min_head_agreement)
    parser.add_argument("--batch-size", type=positive, default=16)
    parser.add_argument("--workers", type=positive, default=2, help="threads decoding images ahead of the network")
    parser.add_argument("--index-type", default="Flat", help="Faiss factory string, e.g. Flat, HNSW32, IVF256,Flat")
    parser.add_argument("--reduce", default=settings.reduce, help=f"{REDUCE_HELP}; default $REDUCE or none")
    parser.add_argument("--self-eval-margin", type=float, default=settings.self_eval_margin,
                        help="refuse to publish when the new version's self-evaluation recall@10 is more than this "
                             "below the served version's; default $SELF_EVAL_MARGIN or 0.05")
    parser.add_argument("--force", action="store_true",
                        help="publish even when the self-evaluation gate refuses the new version")
    parser.add_argument("--keep", type=positive, default=DEFAULT_KEEP,
                        help="index versions to keep, the new one included (older ones are deleted; "
                             "the serving one never is)")
    parser.add_argument("--notify", nargs="*", default=[], metavar="URL",
                        help="service base URLs to ask to reload, e.g. http://127.0.0.1:8001")
    return parser.parse_args(argv)


def parse_rollback_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m indexing rollback",
                                     description="Serve an older index version again.")
    parser.add_argument("--index", type=Path, default=IndexingSettings().index, help="index root (versions + current)")
    parser.add_argument("--to", metavar="VERSION", help="version to serve; default: the one before the serving one")
    parser.add_argument("--notify", nargs="*", default=[], metavar="URL", help="service base URLs to ask to reload")
    return parser.parse_args(argv)


def format_summary(s: BuildSummary) -> str:
    rate = s.embedded / s.embed_seconds if s.embed_seconds and s.embedded else 0.0
    lines = [f"Indexed {s.indexed} images in {len(s.per_category)} categories in {s.seconds:.1f} s "
             f"({rate:.1f} images/s embedding), weights={s.weights}",
             s.changes]
    if s.weights == "random":
        lines.append("  !!! RANDOM WEIGHTS: categories and similarities are meaningless; for tests and demos only !!!")
    lines.append(f"Precision: {s.precision} ({s.precision_reason})")
    if s.int8_gate is not None:
        gate = s.int8_gate
        lines.append(f"int8 gate {'passed' if gate.passed else 'FAILED'}: {gate_summary(gate)}; "
                     f"int8 kernels: {gate.int8_kernels}")
        lines += [f"  below threshold: {failure}" for failure in gate.failures]
        if s.weights == "random":
            lines.append("  (random weights: every embedding lies within cos 0.998 of every other, so these figures "
                         "say almost nothing; the thresholds are for real weights)")
    lines += [f"  !!! {w.strip('! ')} !!!" for w in s.warnings]
    show_types = set(s.index_types.values()) != {"Flat"}
    lines += [f"  {name:<16} {count:>6}" + (f"  {s.index_types.get(name, 'Flat')}" if show_types else "")
              for name, count in s.per_category.items()]
    if s.reduce != "none":
        lines.append(f"Reduced with {s.reduce}: the indexes hold {s.index_dim}-d vectors ({4 * s.index_dim} bytes a photo)")
    lines.append(describe(s.self_eval))
    lines += describe_categories(s.self_eval) if s.self_eval else []
    lines.append(s.gate)
    accuracy = (f"{s.cv_accuracy:.3f} ({s.folds}-fold cross-validated)" if s.cv_accuracy is not None
                else "n/a (too few images)")
    lines.append(f"Category head accuracy: {accuracy}")
    lines.append("Text index: " + ", ".join(f"{f.name}×{f.weight:g}" for f in s.text_fields) + f"; synonyms: {s.synonyms}")
    lines.append(f"ImageNet tags: {s.tagged} photos tagged" if s.tagged is not None else
                 f"ImageNet tags: skipped, the {s.weights} weights know no ImageNet classes (tags need WEIGHTS=imagenet)")
    if s.skipped:
        lines.append(f"Skipped {len(s.skipped)}:")
        lines += [f"  {item.file}: {item.reason}" for item in s.skipped]
    else:
        lines.append("Skipped 0")
    if s.disagreements:
        lines.append(f"Rows that disagree with their product's first row ({len(s.disagreements)}), indexed all the same:")
        lines += [f"  {item.file}: {item.reason}" for item in s.disagreements]
    lines.append(f"Published version {s.version} at {s.version_dir}")
    return "\n".join(lines)


def build_main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.catalog is None:
        args.catalog, note = default_catalog(IndexingSettings().catalog)
        if note:
            print(note)
    try:
        summary = build_index(args.catalog, args.index, args.weights, precision=args.precision,
                              batch_size=args.batch_size, workers=args.workers, index_type=args.index_type,
                              keep=args.keep, text_weights=IndexingSettings().text_weights or None,
                              text_exclude=frozenset(IndexingSettings().text_exclude), int8=Int8Options(
                                  calibration_images=args.int8_calibration_images, gate_images=args.int8_gate_images,
                                  thresholds=GateThresholds(args.int8_min_cosine, args.int8_min_top10_overlap,
                                                            args.int8_min_head_agreement)),
                              reduce=args.reduce, self_eval_margin=args.self_eval_margin, force=args.force)
    except JobError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the serving index is untouched; embeddings done so far are cached, "
              "so the next run resumes from them", file=sys.stderr)
        return 130
    except (OSError, sqlite3.Error) as exc:  # a full disk, most often
        print(f"error: {exc}. The serving index is untouched; embeddings done so far are cached.", file=sys.stderr)
        return 1
    print(format_summary(summary))
    for line in notify_reload(args.notify):
        print(line)
    return 0


def rollback_main(argv: list[str]) -> int:
    args = parse_rollback_args(argv)
    try:
        version, previous = rollback(args.index, args.to)
    except JobError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"Rolled back from {previous} to {version}")
    for line in notify_reload(args.notify):
        print(line)
    return 0


def versions_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m indexing versions", description="List the index versions kept.")
    parser.add_argument("--index", type=Path, default=IndexingSettings().index)
    layout = IndexLayout(parser.parse_args(argv).index)
    current = layout.current()
    for name in layout.published():
        manifest = read_manifest(layout.versions / name)
        reduce = manifest.projection.reduce if manifest.projection else "none"
        print(f"{'*' if current and current.name == name else ' '} {name}  weights={manifest.model.weights}  "
              f"reduce={reduce}  {describe(manifest.self_eval)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    configure_logging()
    commands = {"rollback": rollback_main, "versions": versions_main}
    if argv and argv[0] in commands:
        return commands[argv[0]](argv[1:])
    return build_main(argv)


if __name__ == "__main__":
    sys.exit(main())
