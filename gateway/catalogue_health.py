"""The catalogue's health, from the index root: the serving manifest's self-evaluation, the versions kept,
and the serving version's catalogue report (what its indexing run left out, and why)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from pydantic import ValidationError

from gateway.staff_schemas import CatalogueHealth, CategoryHealth, VersionHealth
from lookalike.catalog.health import read_report
from lookalike.catalog.layout import IndexLayout, read_items, read_manifest
from lookalike.catalog.manifest import Manifest


def _recall(manifest: Manifest, category: str | None) -> tuple[float | None, float | None]:
    evaluation = manifest.self_eval
    if evaluation is None:
        return None, None
    figures = evaluation.overall if category is None else evaluation.per_category.get(category)
    return (figures.recall_at_1, figures.recall_at_10) if figures else (None, None)


def _version(version_dir: Path, serving: bool) -> VersionHealth | None:
    try:
        manifest = read_manifest(version_dir)
        report = read_report(version_dir)
        photos = sum(c.items for c in manifest.categories)
    except (OSError, ValueError, ValidationError):
        return None  # a version half deleted by pruning, or from an incompatible release: not worth failing over
    at_1, at_10 = _recall(manifest, None)
    return VersionHealth(version=manifest.version, serving=serving, published_at=manifest.created_at,
                         weights=manifest.model.weights, products=report.products if report else None,
                         photos=photos, categories=len(manifest.categories),
                         recall_at_1=at_1, recall_at_10=at_10)


def catalogue_health(index_root: Path) -> CatalogueHealth:
    """Reads a few small files of the index root (call it off the event loop)."""
    layout = IndexLayout(index_root)
    current = layout.current()
    versions = [found for name in reversed(layout.published())
                if (found := _version(layout.versions / name, current is not None and current.name == name))]
    if current is None:
        return CatalogueHealth(index_version=None, weights=None, categories=[], versions=versions, report=None)
    manifest = read_manifest(current)
    products: dict[str, set[str]] = defaultdict(set)
    photos: dict[str, int] = defaultdict(int)
    for item in read_items(current):
        products[item.category].add(item.id)
        photos[item.category] += 1
    categories = [CategoryHealth(category=c.name, products=len(products[c.name]), photos=photos[c.name],
                                 recall_at_1=_recall(manifest, c.name)[0], recall_at_10=_recall(manifest, c.name)[1])
                  for c in manifest.categories]
    return CatalogueHealth(index_version=manifest.version, weights=manifest.model.weights, categories=categories,
                           versions=versions, report=read_report(current))
