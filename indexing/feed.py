"""Index a store's Google Merchant Center feed: read it, map categories, fetch photos, build, publish.

The feed's products become catalogue entries exactly as a folder's photos do (one entry per
photo, the product's columns on each), and `build_index` does the rest: photos whose bytes the
embedding cache knows are not embedded again. Before anything is embedded, and again under
the index lock just before publishing, a safety stop compares the products that would be published
with the served version's: a broken CDN or a truncated feed must not empty the store's search.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from indexing.build import BuildPlan, BuildSummary, build_index
from indexing.catalog import CatalogScan, Entry, valid_id
from indexing.catalogue_report import feed_report
from lookalike.catalog.layout import IndexLayout, read_items
from lookalike.catalog.manifest import CatalogItem
from lookalike.errors import EmptyCatalog, FeedError, SafetyStop
from lookalike.feed.categories import CategoryMapping
from lookalike.feed.download import AddressPolicy, Downloader, DownloadFailed, DownloadLimits, Resolver, system_resolver
from lookalike.feed.parse import Feed, FeedProduct, catalogue_columns, parse_feed
from lookalike.feed.photos import PhotoCache, PhotoCounts, PhotoResult, fetch_photos

log = logging.getLogger("lookalike.indexing")

PHOTO_CACHE = "feed-photos"


@dataclass(frozen=True)
class FeedOptions:
    source: str  # a URL or a file path
    photos: Path | None = None  # the photo cache; default <index>/feed-photos
    categories: Path | None = None  # the store's mapping file; default: Google's taxonomy for the demo categories
    allowed_hosts: tuple[str, ...] = ()
    limits: DownloadLimits = DownloadLimits()
    max_feed_bytes: int = 200 * 1024 * 1024
    max_drop_share: float = 0.10
    force: bool = False
    resolver: Resolver = system_resolver  # tests resolve names without DNS


@dataclass
class FeedSummary:
    build: BuildSummary
    source: str
    form: str
    products: int  # in the feed
    indexed_products: int
    unmapped: list[str]  # "id: product_type / google_product_category"
    failed: list[tuple[str, list[tuple[str, str]]]]  # product id, [(url, reason)] for each of its photos
    photos: PhotoCounts
    problems: list[str] = field(default_factory=list)  # feed rows left out, with why
    dropped: int = 0  # served products this version no longer has
    photo_failures: list[str] = field(default_factory=list)  # "url: reason" of failed photos of indexed products


async def read_source(source: str, downloader: Downloader, max_bytes: int) -> bytes:
    """The feed's bytes, from a URL (with the downloads' bounds and address checks) or a file."""
    if source.startswith(("http://", "https://")):
        try:
            got = await downloader.get(source, max_bytes=max_bytes)
        except DownloadFailed as exc:
            raise FeedError(f"could not fetch the feed {source}: {exc.reason}") from None
        return got.body or b""
    path = Path(source)
    try:
        if path.stat().st_size > max_bytes:
            raise FeedError(f"the feed {path} is {path.stat().st_size} bytes, over the {max_bytes}-byte cap "
                            "(FEED_MAX_BYTES)")
        return path.read_bytes()
    except OSError as exc:
        raise FeedError(f"can't read the feed {path}: {exc.strerror or exc}") from None


def photos_of(products: list[FeedProduct]) -> list[str]:
    return list(dict.fromkeys(url for p in products for url in p.images))


def entries_for(products: list[tuple[FeedProduct, str]], results: dict[str, PhotoResult]
                ) -> tuple[list[Entry], list[tuple[str, list[tuple[str, str]]]]]:
    """One entry per usable photo, each carrying its product's columns; products with none, with each URL's reason."""
    entries: list[Entry] = []
    failed: list[tuple[str, list[tuple[str, str]]]] = []
    for product, category in products:
        name = product.get("title") or product.id
        columns = catalogue_columns(product)
        usable = [photo for url in product.images if (photo := results[url].photo) is not None]
        if not usable:
            failed.append((product.id, [(url, results[url].reason) for url in product.images]))
            continue
        for file in dict.fromkeys(p.file for p in usable):
            entries.append(Entry(product.id, category, name, file, columns, product.get("item_group_id") or None))
    return entries, failed


def check_drop(current: Path | None, kept: set[str], options: FeedOptions) -> int:
    """How many of the served products this version leaves out; SafetyStop if more than the allowed share,
    unless forced."""
    if current is None:
        return 0
    served = {item.id for item in read_items(current)}
    dropped = served - kept
    if served and len(dropped) > options.max_drop_share * len(served) and not options.force:
        examples, share = ", ".join(sorted(dropped)[:10]), len(dropped) / len(served)
        raise SafetyStop(
            f"refused to publish: {len(dropped)} of the {len(served)} products served now ({share:.0%}) "
            f"would drop out, more than the {options.max_drop_share:.0%} allowed (FEED_MAX_DROP_SHARE), e.g. {examples}. "
            f"The served version {current.name} stays. If the feed really lost them, run again with --force.")
    return len(dropped)


async def gather_feed(options: FeedOptions, cache: PhotoCache, mapping: CategoryMapping
                      ) -> tuple[Feed, list[tuple[FeedProduct, str]], list[str], dict[str, PhotoResult], PhotoCounts]:
    async with Downloader(AddressPolicy(options.allowed_hosts), options.limits, options.resolver) as downloader:
        data = await read_source(options.source, downloader, options.max_feed_bytes)
        feed = parse_feed(data, options.source)
        mapped: list[tuple[FeedProduct, str]] = []
        unmapped: list[str] = []
        seen: set[str] = set()
        for product in feed.products:
            if not valid_id(product.id):
                feed.problems.append(f"{product.id[:80]!r}: not a usable id (at most 200 printable characters, no /)")
                continue
            if product.id in seen:
                feed.problems.append(f"{product.id}: a second product with this id; the first one is used")
                continue
            seen.add(product.id)
            category = mapping.category_of(product)
            if category is None:
                values = " / ".join(v for v in (product.get("product_type"), product.get("google_product_category")) if v)
                unmapped.append(f"{product.id}: {values or 'no product_type or google_product_category'}")
            else:
                mapped.append((product, category))
        log.info("feed %s: %d products (%s), %d mapped to a category, %d unmapped; fetching their photos",
                 options.source, len(feed.products), feed.form, len(mapped), len(unmapped))
        results, counts = await fetch_photos(photos_of([p for p, _ in mapped]), cache, downloader)
    return feed, mapped, unmapped, results, counts


def index_feed(options: FeedOptions, index_root: Path, weights: str = "auto", **build: Any) -> FeedSummary:
    """Read the feed, fetch its photos, check the safety stop, then build and publish as `build_index` does.

    `build` passes on to `build_index` (precision, batch_size, embedder, ...).
    """
    mapping = CategoryMapping.load(options.categories)
    layout = IndexLayout(index_root)
    cache = PhotoCache(options.photos or layout.root / PHOTO_CACHE)
    try:
        feed, mapped, unmapped, results, counts = asyncio.run(gather_feed(options, cache, mapping))
        entries, failed = entries_for(mapped, results)
        left_out = {url for _, reasons in failed for url, _ in reasons}
        photo_failures = [f"{url}: {r.reason}" for url, r in sorted(results.items())
                          if r.how == "failed" and url not in left_out]
        if not entries:
            raise EmptyCatalog(
                f"Nothing to index from {options.source}: {len(feed.products)} products, {len(unmapped)} mapped to "
                f"no category ({mapping.source}), {len(failed)} without a usable photo."
                + (f" First unmapped: {unmapped[0]}." if unmapped else "")
                + (f" First failed: {failed[0][0]}: {failed[0][1][0][1]}." if failed and failed[0][1] else ""))
        kept = {e.id for e in entries}
        dropped = check_drop(layout.current(), kept, options)  # early, before anything is embedded
        scan = CatalogScan(cache.root, entries, [])

        def recheck(current: Path | None, items: list[CatalogItem]) -> None:
            """Again under the lock: another run may have published since."""
            nonlocal dropped
            dropped = check_drop(current, {i.id for i in items}, options)

        summary = build_index(BuildPlan(cache.root, index_root, weights, scan=scan, source=options.source,
                                        before_publish=recheck, **build))
        feed_report(summary.version_dir, options.source, feed, mapped, unmapped, failed, results,
                    read_items(summary.version_dir))
        cache.retain(photos_of(feed.products))
    finally:
        cache.close()
    return FeedSummary(build=summary, source=options.source, form=feed.form, products=len(feed.products),
                       indexed_products=len({e.id for e in entries}), unmapped=unmapped, failed=failed, photos=counts,
                       problems=feed.problems, dropped=dropped, photo_failures=photo_failures)


def format_feed_summary(s: FeedSummary) -> list[str]:
    """The lines the feed adds to the folder job's summary."""
    p = s.photos
    lines = [f"Feed {s.source} ({s.form}): {s.products} products, {s.indexed_products} indexed, "
             f"{len(s.unmapped)} unmapped, {len(s.failed)} without a usable photo, {len(s.problems)} rows left out; "
             f"{s.dropped} served products dropped out",
             f"Photos: downloaded {p.downloaded}, not modified (304) {p.not_modified}, from cache {p.from_cache}, "
             f"failed {p.failed}; {p.bytes_fetched} bytes fetched"]
    if s.unmapped:
        lines.append(f"Unmapped, left out ({len(s.unmapped)}): add their product_type or google_product_category "
                     "to the category mapping file")
        lines += [f"  {line}" for line in s.unmapped]
    if s.failed:
        lines.append(f"Products whose photos all failed, left out ({len(s.failed)}):")
        for product_id, reasons in s.failed:
            lines += [f"  {product_id}: {url}: {reason}" for url, reason in reasons]
    if s.photo_failures:
        lines.append(f"Photos that failed, their products indexed with their other photos ({len(s.photo_failures)}):")
        lines += [f"  {line}" for line in s.photo_failures]
    if p.warnings:
        lines.append(f"Photos that failed and were used from the last run ({len(p.warnings)}):")
        lines += [f"  {w}" for w in p.warnings]
    if s.problems:
        lines.append(f"Feed rows left out ({len(s.problems)}):")
        lines += [f"  {line}" for line in s.problems]
    return lines
