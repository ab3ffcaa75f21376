"""The catalogue report an indexing run writes into its version (`lookalike.catalog.health`): what it left
out and why, for the staff page's Catalogue health panel, as Merchant Center lists a feed's item issues."""

from __future__ import annotations

import os
from pathlib import Path

from indexing.catalog import Skipped
from lookalike.catalog.health import REPORT, CatalogueReport, FailedPhoto, UnmappedProduct
from lookalike.catalog.manifest import CatalogItem
from lookalike.feed.parse import Feed, FeedProduct, unknown_values
from lookalike.feed.photos import PhotoResult

NO_IMAGE = ": no image_link; left out"


def write_report(version_dir: Path, report: CatalogueReport) -> None:
    """Written whole or not at all: a reader never sees half a report."""
    partial = version_dir / f".{REPORT}.partial"
    partial.write_text(report.model_dump_json(indent=2))
    os.replace(partial, version_dir / REPORT)


def folder_report(version_dir: Path, source: str, items: list[CatalogItem], skipped: list[Skipped]) -> None:
    """A folder run's report: the photos it skipped, and why (a feed run writes its own over it)."""
    kept = {item.file for item in items}
    write_report(version_dir, CatalogueReport(
        source=source, kind="folder", products=len({item.id for item in items}), photos=len(items),
        failed_photos=[FailedPhoto(product=Path(s.file).stem, photo=s.file, reason=s.reason,
                                   product_left_out=s.file not in kept) for s in skipped]))


def feed_report(version_dir: Path, source: str, feed: Feed, mapped: list[tuple[FeedProduct, str]],
                unmapped: list[str], failed: list[tuple[str, list[tuple[str, str]]]],
                results: dict[str, PhotoResult], items: list[CatalogItem]) -> None:
    """A feed run's report: products mapped to no category, photos that failed (and whether their product
    was left out), products listed without a photo, and values of no known form."""
    left_out = {product_id for product_id, _ in failed}
    photos = [FailedPhoto(product=product_id, photo=url, reason=reason, product_left_out=True)
              for product_id, reasons in failed for url, reason in reasons]
    photos += [FailedPhoto(product=product.id, photo=url, reason=results[url].reason, product_left_out=False)
               for product, _ in mapped if product.id not in left_out
               for url in product.images if url in results and results[url].how == "failed"]
    write_report(version_dir, CatalogueReport(
        source=source, kind="feed", products=len({item.id for item in items}), photos=len(items),
        unmapped=[UnmappedProduct(id=line.partition(": ")[0], values=line.partition(": ")[2]) for line in unmapped],
        failed_photos=photos,
        without_photo=[problem.removesuffix(NO_IMAGE) for problem in feed.problems if problem.endswith(NO_IMAGE)],
        unknown_values=unknown_values(feed.products)))
