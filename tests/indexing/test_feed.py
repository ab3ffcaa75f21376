"""A store's product feed indexed end to end: read, mapped, photos fetched, built, published, re-run.

The store's server is a real HTTP server on loopback (tests/lookalike/feed/feed_server.py) serving
real photos from ../shared; downloads are allowed to 127.0.0.1 as FEED_ALLOWED_HOSTS would allow it.
Five products per category, `random` weights.
"""

from __future__ import annotations

import csv
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from indexing.__main__ import main
from indexing.feed import FeedOptions, FeedSummary, index_feed
from lookalike.catalog.filters import ColumnTable
from lookalike.catalog.health import read_report
from lookalike.catalog.layout import INDEXES, IndexLayout, read_items
from lookalike.errors import SafetyStop
from lookalike.feed.download import DownloadLimits
from lookalike.vision.embedder import Embedder
from lookalike.where import parse_filters
from tests.lookalike.feed.feed_server import FeedServer, Route, as_tsv, as_xml, feed_server
from tests.support import Services

PER_CATEGORY = 5
CLASSIFY = {"chair": {"google_product_category": "443"},
            "sofa": {"google_product_category": "Furniture > Sofas"},
            "table": {"product_type": "Furniture > Tables > Coffee Tables"},
            "bed": {"google_product_category": "505764"},
            "lamp": {"product_type": "Home & Garden > Lighting > Lamps > Table Lamps"}}
LIMITS = DownloadLimits(total_timeout_s=20)
# Real stores' feeds mix the specification's spellings; the fifth of each fits no known form.
AVAILABILITY = ["in_stock", "Out of Stock", "in stock", "pre-order", "coming soon"]
CONDITION = ["new", "Refurbished", "NEW", "used", "as good as new"]


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder("random", "fp32")


@pytest.fixture(scope="module")
def server(shared: Path) -> Iterator[FeedServer]:
    """The store: photos at /photos/<file>, and its feed's products (`server.products`) to serve as XML or TSV."""
    with open(shared / "catalog" / "products.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    with feed_server() as store:
        products: list[dict[str, object]] = []
        for category, classified in CLASSIFY.items():
            of_category = [r for r in rows if r["category"] == category]
            for n, row in enumerate(of_category[:PER_CATEGORY]):
                products.append({
                    "id": row["id"], "title": row["name"], "description": f"A {category} from the test store",
                    "link": f"https://shop.example/products/{row['id']}",
                    "image_link": store.photo(f"/photos/{row['file']}", shared / "catalog" / row["file"]),
                    "price": f"{100 * (n + 1)}.00 EUR", "availability": AVAILABILITY[n], "condition": CONDITION[n],
                    "brand": "Woodly", "color": ["oak", "black", "white"][n % 3], "material": "wood",
                    "item_group_id": row["item_group_id"], **classified})
        extra = [r for r in rows if r["category"] == "chair"][PER_CATEGORY]
        products[0]["additional_image_link"] = [store.photo(f"/photos/{extra['file']}", shared / "catalog" / extra["file"])]
        products.append({"id": "vase-1", "title": "Vase", "image_link": products[0]["image_link"], "price": "9 EUR",
                         "google_product_category": "Home & Garden > Decor > Vases"})
        store.products = products  # type: ignore[attr-defined]
        serve(store, products)
        yield store


def serve(store: FeedServer, products: list[dict[str, object]]) -> None:
    store.routes["/feed.xml"] = Route(as_xml(products), content_type="application/xml")
    store.routes["/feed.tsv"] = Route(as_tsv(products), content_type="text/tab-separated-values")


def options(server: FeedServer, path: str = "/feed.xml", **changes: Any) -> FeedOptions:
    return FeedOptions(source=server.url(path), allowed_hosts=("127.0.0.1",), limits=LIMITS, **changes)


def index(server: FeedServer, root: Path, embedder: Embedder, path: str = "/feed.xml", **changes: Any) -> FeedSummary:
    return index_feed(options(server, path, **changes), root, "random", precision="fp32", embedder=embedder)


@pytest.fixture(scope="module")
def published(server: FeedServer, embedder: Embedder, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, FeedSummary]:
    """The XML feed indexed once; tests copy the index root (photo cache and embedding cache included)."""
    root = tmp_path_factory.mktemp("feed-index")
    return root, index(server, root, embedder)


@pytest.fixture
def copy(published: tuple[Path, FeedSummary], tmp_path: Path, server: FeedServer) -> Iterator[Path]:
    """A copy of the published index root; the store's server is put back as it was afterwards."""
    shutil.copytree(published[0], tmp_path / "index", symlinks=True)
    server.reset_counts()
    routes = dict(server.routes)
    yield tmp_path / "index"
    server.routes = routes
    serve(server, server.products)  # type: ignore[attr-defined]


def served_items(root: Path) -> list[Any]:
    return read_items(IndexLayout(root).current())


def test_a_feed_becomes_a_published_version_with_its_categories_and_columns(published: tuple[Path, FeedSummary]
                                                                            ) -> None:
    root, summary = published
    assert summary.build.per_category == {"bed": 5, "chair": 6, "lamp": 5, "sofa": 5, "table": 5}
    assert summary.unmapped == ["vase-1: Home & Garden > Decor > Vases"] and summary.failed == []
    assert (summary.photos.downloaded, summary.photos.failed) == (26, 0)
    items = served_items(root)
    first = next(i for i in items if i.category == "chair")
    assert first.extra == {"price": "100.00", "currency": "EUR", "availability": "in_stock", "condition": "new",
                           "brand": "Woodly",
                           "color": "oak", "material": "wood", "description": "A chair from the test store",
                           "link": f"https://shop.example/products/{first.id}"}
    assert sum(1 for i in items if i.id == first.id) == 2  # image_link and its additional_image_link
    assert first.group_id


@pytest.mark.parametrize(("where", "positions"), [
    ("availability=in_stock", {0, 2}), ("availability=out_of_stock", {1}), ("availability=preorder", {3}),
    ("availability=coming soon", {4}), ("condition=new", {0, 2}), ("condition=refurbished", {1}),
    ("condition=used", {3}),
])
def test_a_feeds_mixed_spellings_are_stored_in_the_specifications_form_and_filter_alike(
        published: tuple[Path, FeedSummary], where: str, positions: set[int]) -> None:
    """`in stock`, `In Stock` and `in_stock` are one value; one that fits no known form is kept verbatim."""
    items = served_items(published[0])
    table = ColumnTable(items)
    passed = table.mask(parse_filters([where], table.columns))
    # The n-th product of a category costs 100 * (n + 1).
    assert {round(float(i.extra["price"])) // 100 - 1 for i in items if passed[i.label] and i.category == "sofa"} \
        == positions


def test_the_version_holds_a_catalogue_report_of_what_the_run_left_out(published: tuple[Path, FeedSummary]) -> None:
    report = read_report(IndexLayout(published[0]).require_current())
    assert report is not None and report.kind == "feed" and (report.products, report.photos) == (25, 26)
    assert [(u.id, u.values) for u in report.unmapped] == [("vase-1", "Home & Garden > Decor > Vases")]
    assert report.failed_photos == [] and report.without_photo == []
    assert report.unknown_values == {"availability": {"coming soon": 5}, "condition": {"as good as new": 5}}


def test_the_tsv_form_of_the_feed_gives_the_same_version(server: FeedServer, published: tuple[Path, FeedSummary],
                                                         embedder: Embedder, tmp_path: Path) -> None:
    tsv = index(server, tmp_path / "index", embedder, "/feed.tsv")
    assert tsv.form == "tsv" and tsv.unmapped == published[1].unmapped
    assert served_items(tmp_path / "index") == served_items(published[0])


def test_a_rerun_with_nothing_changed_fetches_no_photo_and_embeds_none(server: FeedServer, copy: Path,
                                                                       embedder: Embedder) -> None:
    before = IndexLayout(copy).current()
    summary = index(server, copy, embedder)
    photo_paths = [p for p in server.requests if p.startswith("/photos/")]
    assert len(photo_paths) == 26 and sum(server.bodies[p] for p in photo_paths) == 0
    assert (summary.photos.downloaded, summary.photos.not_modified) == (0, 26)
    assert summary.build.changes == "embedded 0, reused 26, removed 0"
    after = IndexLayout(copy).current()
    assert after != before and read_items(after) == read_items(before)
    for faiss_file in (before / INDEXES).iterdir():  # the same vectors, so the same answers
        assert (after / INDEXES / faiss_file.name).read_bytes() == faiss_file.read_bytes()


def test_a_changed_photo_is_the_only_one_fetched_and_embedded_and_a_removed_product_goes(
        server: FeedServer, copy: Path, embedder: Embedder, shared: Path) -> None:
    products = list(server.products)  # type: ignore[attr-defined]
    changed, removed = products[6], products[7]  # a sofa's photo changes; another sofa leaves the feed
    changed_path = str(changed["image_link"]).removeprefix(server.base)
    server.routes[changed_path] = Route(sorted((shared / "bulk").rglob("*.jpg"))[0].read_bytes())
    serve(server, [p for p in products if p is not removed])
    summary = index(server, copy, embedder)
    assert [p for p in server.bodies if p.startswith("/photos/")] == [changed_path]
    assert (summary.photos.downloaded, summary.photos.not_modified) == (1, 24)
    assert summary.build.embedded == 1 and summary.dropped == 1
    ids = {i.id for i in served_items(copy)}
    assert removed["id"] not in ids and changed["id"] in ids


def test_a_feed_missing_half_its_products_is_refused_and_the_served_version_stays(
        server: FeedServer, copy: Path, embedder: Embedder) -> None:
    products = server.products  # type: ignore[attr-defined]
    serve(server, products[::2])
    before = IndexLayout(copy).current()
    with pytest.raises(SafetyStop, match=r"12 of the 25 products .* would drop out.*--force"):
        index(server, copy, embedder)
    assert IndexLayout(copy).current() == before
    forced = index(server, copy, embedder, force=True)
    assert forced.dropped == 12 and len({i.id for i in served_items(copy)}) == 13


def test_products_whose_photos_all_fail_are_left_out_and_reported_with_each_reason(
        server: FeedServer, copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    products = [dict(p) for p in server.products]  # type: ignore[attr-defined]
    products[1]["image_link"] = server.url("/photos/gone.jpg")
    products[2]["image_link"] = server.url("/photos/page.jpg")
    products[0]["additional_image_link"] = [server.url("/photos/broken.jpg")]
    server.routes["/photos/broken.jpg"] = Route(b"", status=500, content_type="text/plain")
    server.routes["/photos/page.jpg"] = Route(b"<html>Sorry</html>")
    serve(server, products)
    code = main(["--feed", server.url("/feed.xml"), "--index", str(copy), "--weights", "random",
                 "--precision", "fp32", "--allow-host", "127.0.0.1"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "Products whose photos all failed, left out (2):" in out
    assert f"  {products[1]['id']}: {server.url('/photos/gone.jpg')}: HTTP 404 Not Found" in out
    assert f"  {products[2]['id']}: {server.url('/photos/page.jpg')}: not a usable image" in out
    assert "Unmapped, left out (1)" in out and "  vase-1: Home & Garden > Decor > Vases" in out
    assert "Photos: downloaded 0, not modified (304) 23, from cache 0, failed 3" in out
    assert ("Photos that failed, their products indexed with their other photos (1):\n"
            f"  {server.url('/photos/broken.jpg')}: HTTP 500 Internal Server Error") in out
    assert "embedded 0, reused 23, removed 3" in out
    assert {products[1]["id"], products[2]["id"]}.isdisjoint({i.id for i in served_items(copy)})
    report = read_report(IndexLayout(copy).require_current())
    assert report is not None
    assert {(f.product, f.photo, f.product_left_out) for f in report.failed_photos} == {
        (products[1]["id"], server.url("/photos/gone.jpg"), True), (products[2]["id"], server.url("/photos/page.jpg"), True),
        (products[0]["id"], server.url("/photos/broken.jpg"), False)}


def test_the_feed_server_must_be_allowed_when_it_is_on_a_private_address(server: FeedServer, tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    server.reset_counts()
    code = main(["--feed", server.url("/feed.xml"), "--index", str(tmp_path / "index"), "--weights", "random"])
    assert code == 2
    assert "127.0.0.1 is a loopback address" in capsys.readouterr().err
    assert server.requests["/feed.xml"] == 0


def test_a_search_through_the_gateway_filters_on_the_feeds_columns_and_returns_the_link(
        published: tuple[Path, FeedSummary], tmp_path: Path, shared: Path) -> None:
    root = published[0]
    photo = sorted((shared / "catalog" / "sofa").glob("*.jpg"))[0].read_bytes()
    with Services(root, tmp_path).running(env={"classifier": {"CLASSIFIER_MAX_BATCH": "1"}}, ready=()) as stack:
        stack.wait_ready("gateway", timeout_s=600)
        catalog = httpx.get(stack.gateway + "/api/v1/catalog").json()
        assert [c["name"] for c in catalog["filters"]] == ["price", "availability", "brand", "color", "material"]
        answer = httpx.post(f"{stack.gateway}/api/v1/search", files={"image": ("q.jpg", photo, "image/jpeg")},
                            params={"category": "sofa", "k": 10, "where": ["availability=in_stock", "price<=300"]},
                            timeout=60)
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert results and all(r["extra"]["availability"] == "in_stock" and float(r["extra"]["price"]) <= 300
                           for r in results)
    assert all(r["extra"]["link"] == f"https://shop.example/products/{r['id']}" for r in results)


@pytest.mark.parametrize(("declaration", "said"), [
    ('<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">', "declares an entity declaration ('a')"),
    ('<!ENTITY secret SYSTEM "file:///etc/passwd">', "declares an external entity ('secret')"),
])
def test_a_feed_with_entities_stops_the_job_with_a_clear_error(server: FeedServer, copy: Path, declaration: str,
                                                               said: str, capsys: pytest.CaptureFixture[str]) -> None:
    before = IndexLayout(copy).current()
    server.routes["/feed.xml"] = Route(f'<?xml version="1.0"?><!DOCTYPE rss [{declaration}]>'.encode()
                                       + as_xml(server.products).split(b"?>", 1)[1],  # type: ignore[attr-defined]
                                       content_type="application/xml")
    code = main(["--feed", server.url("/feed.xml"), "--index", str(copy), "--weights", "random",
                 "--allow-host", "127.0.0.1"])
    assert code == 2
    assert said in capsys.readouterr().err
    assert IndexLayout(copy).current() == before
