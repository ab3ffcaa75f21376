"""The indexing job's command line (also `lookalike index`, `lookalike rollback`, `lookalike versions`).

    python -m indexing --catalog DIR --index DIR --weights MODE [--keep N] [--notify URL...]
    python -m indexing --feed URL_OR_FILE [--feed-categories FILE] [--allow-host HOST...] [--force] ...
    python -m indexing rollback --index DIR [--to VERSION] [--notify URL...]
    python -m indexing versions --index DIR

Flags and environment variables come from indexing/settings.py; `--help` lists them.
"""

from __future__ import annotations

import sqlite3
import sys
from typing import TYPE_CHECKING, Any

from pydantic import Field
from pydantic_settings import CliSubCommand, get_subcommand

from indexing.catalog import default_catalog
from indexing.index_extra import require_index_extra
from indexing.notify import notify_reload
from indexing.self_eval import describe, describe_categories
from indexing.settings import IndexBuildSettings, RollbackSettings, VersionsSettings
from indexing.versions import rollback
from lookalike.catalog.layout import IndexLayout, read_manifest
from lookalike.feed.download import DownloadLimits
from lookalike.heap_trim import mmap_large_buffers
from lookalike.log_lines import configure_logging
from lookalike.program import Program
from lookalike.settings import InternalAccess

if TYPE_CHECKING:  # the build needs torch (the `index` extra): imported when a build runs, after checking for it
    from indexing.build import BuildSummary, Int8Options
    from indexing.feed import FeedOptions


class IndexingCommandLine(IndexBuildSettings):
    """Build a new index version from a catalogue folder, publish it, and tell running services to reload;
    `rollback` and `versions` manage the versions published."""

    rollback: CliSubCommand[RollbackSettings] = Field(description="Serve an older index version again.")
    versions: CliSubCommand[VersionsSettings] = Field(description="List the index versions kept.")


def format_summary(s: BuildSummary) -> str:
    from lookalike.vision.precision import gate_summary

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
    lines.append(f"Text model: {s.text_model.name} ({s.text_model.dim}-d, digest {s.text_model.digest[:12]}); "
                 f"texts embedded {s.text_embedded}, reused {s.text_reused}" if s.text_model is not None else
                 "Text model: none (words are searched by bm25 alone)")
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
    lines += s.notified
    if s.pruned:
        lines.append(f"Deleted old versions: {', '.join(s.pruned)}")
    lines += [f"  !!! after publishing (the new version serves all the same): {failure} !!!"
              for failure in s.after_publish_failures]
    return "\n".join(lines)


def int8_options(settings: IndexBuildSettings) -> Int8Options:
    from indexing.build import Int8Options
    from indexing.quantise_gate import GateThresholds

    return Int8Options(calibration_images=settings.int8_calibration_images, gate_images=settings.int8_gate_images,
                       thresholds=GateThresholds(settings.int8_min_cosine, settings.int8_min_top10_overlap,
                                                 settings.int8_min_head_agreement))


def feed_options(settings: IndexBuildSettings) -> FeedOptions:
    from indexing.feed import FeedOptions

    assert settings.feed is not None
    return FeedOptions(
        source=settings.feed, photos=settings.feed_photos, categories=settings.feed_categories,
        allowed_hosts=tuple(settings.feed_allowed_hosts), force=settings.force, max_feed_bytes=settings.feed_max_bytes,
        max_drop_share=settings.feed_max_drop_share,
        limits=DownloadLimits(max_bytes=settings.feed_max_photo_bytes, connect_timeout_s=settings.feed_connect_timeout_s,
                              total_timeout_s=settings.feed_timeout_s, max_redirects=settings.feed_max_redirects,
                              concurrency=settings.feed_concurrency, per_host=settings.feed_per_host))


def build(settings: IndexBuildSettings) -> int:
    if settings.feed and settings.catalog is not None:
        print("error: --feed and --catalog are two sources; give one", file=sys.stderr)
        return 2
    require_index_extra()
    from indexing.build import BuildPlan, build_index
    from indexing.feed import format_feed_summary, index_feed

    feed_lines: list[str] = []
    how: dict[str, Any] = {  # how to build, from whichever source
        "precision": settings.precision, "batch_size": settings.batch_size, "workers": settings.workers,
        "index_type": settings.index_type, "keep": settings.keep, "text_weights": settings.text_weights or None,
        "text_exclude": frozenset(settings.text_exclude), "text_model": settings.text_model,
        "int8": int8_options(settings), "reduce": settings.reduce, "self_eval_margin": settings.self_eval_margin,
        "force": settings.force, "notify": tuple(settings.notify), "internal_token": InternalAccess().internal_token,
        "torch_in_child": True}  # this process never imports torch: see indexing.torch_steps
    serving_before = IndexLayout(settings.index).current()
    try:
        if settings.feed:
            feed = index_feed(feed_options(settings), settings.index, settings.weights, **how)
            summary, feed_lines = feed.build, list(format_feed_summary(feed))
        else:
            catalog, note = default_catalog(settings.catalog)
            if note:
                print(note)
            summary = build_index(BuildPlan(catalog, settings.index, settings.weights, **how))
    except KeyboardInterrupt:
        serving_now = IndexLayout(settings.index).current()
        if serving_now != serving_before and serving_now is not None:
            print(f"interrupted after publishing {serving_now.name}: it is the current version, but the services may "
                  "not have been told to reload, nor old versions pruned; the next run does both", file=sys.stderr)
        else:
            print("interrupted: the serving index is untouched; embeddings done so far are cached, "
                  "so the next run resumes from them", file=sys.stderr)
        return 130
    except (OSError, sqlite3.Error) as exc:  # a full disk, most often
        print(f"error: {exc}. The serving index is untouched; embeddings done so far are cached.", file=sys.stderr)
        return 1
    print(format_summary(summary))
    for line in feed_lines:
        print(line)
    return 0


def roll_back(settings: RollbackSettings) -> int:
    version, previous = rollback(settings.index, settings.to)
    print(f"Rolled back from {previous} to {version}")
    for line in notify_reload(settings.notify, InternalAccess().internal_token):
        print(line)
    return 0


def list_versions(settings: VersionsSettings) -> int:
    layout = IndexLayout(settings.index)
    current = layout.current()
    for name in layout.published():
        manifest = read_manifest(layout.versions / name)
        reduce = manifest.projection.reduce if manifest.projection else "none"
        print(f"{'*' if current and current.name == name else ' '} {name}  weights={manifest.model.weights}  "
              f"reduce={reduce}  {describe(manifest.self_eval)}")
    return 0


def run_indexing(settings: IndexBuildSettings | RollbackSettings | VersionsSettings) -> int:
    """Build, or the subcommand chosen: `python -m indexing` reads an IndexingCommandLine, `lookalike` the three."""
    configure_logging()
    if isinstance(settings, IndexingCommandLine):
        chosen = get_subcommand(settings, is_required=False)
        settings = chosen if isinstance(chosen, RollbackSettings | VersionsSettings) else settings
    mmap_large_buffers()  # the exported network and ONNX Runtime's activations go back to the kernel when freed
    match settings:
        case RollbackSettings():
            return roll_back(settings)
        case VersionsSettings():
            return list_versions(settings)
        case _:
            return build(settings)


PROGRAM = Program(IndexingCommandLine, run_indexing, prog="python -m indexing")
main = PROGRAM.main

if __name__ == "__main__":
    sys.exit(main())
