"""`<lookalike-search>` on a store's own page: another origin, a strict CSP, a catalogue built from the store's feed.

One real stack for the module (random weights): the store's feed (tests/lookalike/feed/feed_server.py)
indexed with its `link`s, the three services, and the gateway's allow-list naming the shop at
http://127.0.0.2:<port>. The shop's page is plain HTML from that origin with the strict CSP the issue
gives; a second shop at 127.0.0.3 is not on the list. The photos are open-licence ones (Caltech-101 lamps
and chandeliers, CC BY 4.0), so the screenshot can go in the docs.
"""

from __future__ import annotations

import csv
import io
import os
import re
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from PIL import Image
from playwright.sync_api import ConsoleMessage, Locator, Page, Request, Route, expect

from indexing.feed import FeedOptions, index_feed
from tests.gateway.browser.test_steering_page import classify_count, jpeg_in
from tests.lookalike.feed.feed_server import Route as FeedRoute
from tests.lookalike.feed.feed_server import as_xml, feed_server
from tests.support import REPO, Services, operator

PER_CATEGORY = 4
DOCS_SCREENSHOT = REPO / "docs" / "widget.png"
FOUND = re.compile(r"^Found \d+ similar products\.$")
WIDGET_BUDGET_GZIPPED = 25_000
MAPPING = "lamp: Home & Garden > Lighting > Lamps\nchandelier: Home & Garden > Lighting > Chandeliers\n"
SHOP_PAGE = """<!doctype html>
<html lang="en-IE"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Lumen &amp; Co. - lighting</title><link rel="stylesheet" href="/shop.css">
<script type="module" src="{gateway}/widget.js"></script></head>
<body><header><strong>Lumen &amp; Co.</strong><lookalike-search placeholder="e.g. brass, glass"></lookalike-search>
</header><main><h1>Lamps and chandeliers</h1><p>Seen one you like somewhere? Search our shop with a photo of it.</p>
<p><a href="/about">About us</a></p></main></body></html>
"""
# The store's own CSS: theming through custom properties and ::part, and rules that must not reach inside.
SHOP_CSS = """body { margin: 0; font: 18px/1.5 Georgia, serif; color: #222; }
header { display: flex; flex-wrap: wrap; gap: 1rem; align-items: center; justify-content: space-between;
  padding: 1rem; background: #f4efe6; }
main { padding: 1rem; }
button { all: unset; font-size: 40px; color: red; }
li { list-style: square; margin-left: 5em; }
lookalike-search { --lookalike-accent: #7a4a12; --lookalike-radius: 4px; --lookalike-font: Georgia, serif; }
lookalike-search::part(button) { text-transform: uppercase; letter-spacing: .04em; }
"""


class ShopServer:
    """A store's web server on a loopback address of its own: its page, with the CSP the issue gives, and its CSS."""

    def __init__(self, host: str) -> None:
        self.files: dict[str, tuple[bytes, str]] = {}
        self.csp = ""
        shop = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                body, content_type = shop.files.get(self.path, (b"not found", "text/plain"))
                self.send_response(200 if self.path in shop.files else 404)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Security-Policy", shop.csp)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.http = ThreadingHTTPServer((host, 0), Handler)
        self.http.daemon_threads = True
        self.origin = f"http://{host}:{self.http.server_address[1]}"
        self.thread = threading.Thread(target=self.http.serve_forever, daemon=True)

    def serve(self, gateway: str) -> None:
        self.csp = (f"default-src 'self'; script-src 'self' {gateway}; connect-src {gateway}; "
                    f"img-src {gateway} blob: data:; style-src 'self'")
        self.files = {"/": (SHOP_PAGE.format(gateway=gateway).encode(), "text/html; charset=utf-8"),
                      "/shop.css": (SHOP_CSS.encode(), "text/css")}
        self.thread.start()

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()


@dataclass
class Store:
    stack: Services
    shop: ShopServer
    elsewhere: ShopServer  # a site not on the allow-list
    links: dict[str, str]  # product id -> its `link` in the feed


@pytest.fixture(scope="module")
def store(shared: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    with open(shared / "catalog" / "products.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["id"].startswith(("caltech-lamp-", "caltech-chandelier-"))]
    root = tmp_path_factory.mktemp("feed-store")
    (root / "categories.txt").write_text(MAPPING)
    with feed_server() as feed:
        products: list[dict[str, object]] = []
        for stem, kind in (("caltech-lamp-", "Lamps"), ("caltech-chandelier-", "Chandeliers")):
            for n, row in enumerate([r for r in rows if r["id"].startswith(stem)][:PER_CATEGORY]):
                products.append({
                    "id": row["id"], "title": row["name"], "price": f"{89 + 40 * n}.00 EUR",
                    "link": f"https://lumen.example/products/{row['id']}" if n else "",  # the first has no page
                    "image_link": feed.photo(f"/photos/{row['file']}", shared / "catalog" / row["file"]),
                    "product_type": f"Home & Garden > Lighting > {kind}"})
        feed.routes["/feed.xml"] = FeedRoute(as_xml(products), content_type="application/xml")
        index = root / "index"
        options = FeedOptions(source=feed.url("/feed.xml"), categories=root / "categories.txt",
                              allowed_hosts=("127.0.0.1",))
        # In a thread of its own: the job runs an event loop, and Playwright's sync API may hold one in this thread.
        with ThreadPoolExecutor(1) as job:
            summary = job.submit(index_feed, options, index, "random", precision="fp32").result()
    assert summary.build.per_category == {"chandelier": PER_CATEGORY, "lamp": PER_CATEGORY}
    shop, elsewhere = ShopServer("127.0.0.2"), ShopServer("127.0.0.3")
    stack = Services(index, tmp_path_factory.mktemp("widget-logs"))
    try:
        # Batches of one: the classifier warms up one size only, which matters on a busy shared machine.
        with stack.running(env={"gateway": {"GATEWAY_ALLOWED_ORIGINS": shop.origin},
                                "classifier": {"CLASSIFIER_MAX_BATCH": "1"}}):
            shop.serve(stack.gateway)
            elsewhere.serve(stack.gateway)
            yield Store(stack, shop, elsewhere, {str(p["id"]): str(p["link"]) for p in products if p["link"]})
    finally:
        shop.close()
        elsewhere.close()


@pytest.fixture(scope="module")
def chandelier(shared: Path) -> Path:
    return shared / "queries" / "lamp" / "caltech-chandelier-0007.jpg"


@pytest.fixture(scope="module")
def sideways_12mp(chandelier: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 12-megapixel landscape sensor image whose EXIF says "rotate 90°" (orientation 6): it shows as portrait."""
    path = tmp_path_factory.mktemp("phone") / "IMG_0002.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.open(chandelier).convert("RGB").resize((4032, 3024)).save(path, "JPEG", quality=92, exif=exif)
    return path


# ---- what the tests do on the shop's page ---------------------------------------------------------------------

def csp_violations(page: Page) -> list[str]:
    """Console errors that say the page's Content-Security-Policy refused something, collected from now on."""
    found: list[str] = []

    def check(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text or "Content-Security-Policy" in message.text:
            found.append(message.text)

    page.on("console", check)
    return found


def status(page: Page) -> Locator:
    """The dialog's one line of news: searching, found, or what went wrong."""
    return page.get_by_role("dialog").get_by_role("status")


def open_shop(page: Page, origin: str) -> None:
    page.goto(origin + "/")
    expect(page.get_by_role("button", name="Search by photo")).to_be_visible()


def open_dialog(page: Page) -> None:
    page.get_by_role("button", name="Search by photo").click()
    dialog = page.get_by_role("dialog", name="Search by photo")
    expect(dialog).to_be_visible()
    expect(dialog).to_have_attribute("aria-modal", "true")
    expect(dialog.get_by_role("heading", name="Search by photo")).to_be_focused()


def choose_photo(page: Page, photo: Path) -> None:
    with page.expect_file_chooser() as chooser:
        page.get_by_role("button", name=re.compile(r"^Choose (a|another) photo$")).click()
    chooser.value.set_files(str(photo))
    expect(status(page)).to_have_text(FOUND)


def result_links(page: Page) -> list[str]:
    return page.locator("lookalike-search ul a").evaluate_all("links => links.map((a) => a.href)")


def assert_results_link_to_the_feed(page: Page, store: Store) -> None:
    links = result_links(page)
    assert links and set(links) <= set(store.links.values()), links
    expect(page.locator("lookalike-search ul").get_by_text(re.compile(r"^€\d+\.00$")).first).to_be_visible()


def switch_category_by_chip(page: Page, store: Store) -> None:
    """The other category's chip steers the same photo: results come, and the classifier ran for the upload alone."""
    before = classify_count(store.stack)
    chips = page.locator("lookalike-search").get_by_role("group", name="Search another category")
    other = chips.locator('button[aria-pressed="false"]')
    name = other.inner_text()
    with page.expect_response(lambda r: "photo=" in r.url and r.status == 200):
        other.click()
    expect(chips.get_by_role("button", name=name)).to_have_attribute("aria-pressed", "true")
    expect(status(page)).to_have_text(FOUND)
    assert classify_count(store.stack) == before, "a chip names the photo's handle: no second upload"


def close_with_escape(page: Page) -> None:
    page.keyboard.press("Escape")
    expect(page.get_by_role("dialog")).to_be_hidden()
    focused = page.evaluate("() => document.activeElement.shadowRoot?.activeElement?.textContent")
    assert focused == "Search by photo", "focus is back on the button"


def wider_than_the_viewport(page: Page) -> list[str]:
    """Every visible element, shadow roots included, whose right edge passes the viewport's."""
    found: list[str] = page.evaluate("""() => {
        const width = document.documentElement.clientWidth, out = [];
        const walk = (root) => root.querySelectorAll("*").forEach((e) => {
            if (e.shadowRoot) walk(e.shadowRoot);
            const box = e.getBoundingClientRect();
            if (e.getClientRects().length && box.width > 1 && box.right > width + 0.5)
                out.push(`${e.tagName.toLowerCase()}.${e.className}: right at ${box.right}`);
        });
        walk(document);
        return out;
    }""")
    return found


class Uploads:
    """Every photo the widget uploads, as sent."""

    def __init__(self, page: Page) -> None:
        self.bodies: list[bytes] = []
        page.route("**/api/v1/search?*", self._record)

    def _record(self, route: Route, request: Request) -> None:
        if request.post_data_buffer:
            self.bodies.append(request.post_data_buffer)
        route.fallback()


# ---- the tests ------------------------------------------------------------------------------------------------

def test_a_shopper_on_the_stores_desktop_page_searches_by_photo_and_lands_on_its_product_pages(
        page: Page, store: Store, chandelier: Path) -> None:
    violations = csp_violations(page)
    scripts: list[str] = []
    page.on("request", lambda r: scripts.append(r.url) if r.resource_type == "script" else None)
    open_shop(page, store.shop.origin)
    open_dialog(page)
    choose_photo(page, chandelier)
    assert_results_link_to_the_feed(page, store)
    without_page = page.locator("lookalike-search ul li").filter(has_not=page.locator("a"))
    expect(without_page.get_by_role("button", name=re.compile(r"^More like this"))).to_have_count(1)
    switch_category_by_chip(page, store)
    if os.environ.get("LOOKALIKE_SCREENSHOT") == "1":
        page.wait_for_function("""() => [...document.querySelector("lookalike-search").shadowRoot
            .querySelectorAll("ul img")].every((i) => i.complete && i.naturalWidth > 0)""")
        page.screenshot(path=str(DOCS_SCREENSHOT), animations="disabled")
        assert DOCS_SCREENSHOT.stat().st_size < 300_000, "keep the docs' picture small"
    close_with_escape(page)
    assert not violations, violations
    loaded = sorted(set(scripts))
    assert sorted(url.rsplit("/", 1)[-1].split(".")[0] for url in loaded) == ["dialog", "widget"], loaded
    gzipped = sum(httpx.get(url, headers={"Accept-Encoding": "gzip"}).num_bytes_downloaded for url in loaded)
    assert gzipped <= WIDGET_BUDGET_GZIPPED, f"{gzipped} bytes gzipped for {loaded}"


def test_on_a_phone_the_dialog_fits_the_screen_and_the_photo_is_sent_small_and_upright(
        phone: Page, store: Store, sideways_12mp: Path) -> None:
    violations = csp_violations(phone)
    uploads = Uploads(phone)
    open_shop(phone, store.shop.origin)
    open_dialog(phone)
    expect(phone.locator("lookalike-search input[capture=environment]")).to_have_count(1)
    expect(phone.get_by_role("button", name="Take a photo")).to_be_visible()
    choose_photo(phone, sideways_12mp)
    [body] = uploads.bodies
    sent = Image.open(io.BytesIO(jpeg_in(body)))
    assert sent.format == "JPEG" and sent.size == (960, 1280), "portrait, 1280 px on the long side"
    assert_results_link_to_the_feed(phone, store)
    assert wider_than_the_viewport(phone) == []
    switch_category_by_chip(phone, store)
    assert wider_than_the_viewport(phone) == []
    close_with_escape(phone)
    assert not violations, violations


def test_the_keyboard_alone_reaches_everything_and_axe_finds_nothing_serious(
        page: Page, store: Store, chandelier: Path) -> None:
    page.on("filechooser", lambda _: None)  # Playwright intercepts choosers from now on, not from the first wait
    open_shop(page, store.shop.origin)
    focused: Callable[[], str] = lambda: page.evaluate(  # noqa: E731
        "() => { const e = document.activeElement; const inner = e.shadowRoot ? e.shadowRoot.activeElement : e;"
        " return inner ? `${inner.tagName} ${inner.getAttribute('aria-label') || inner.textContent}` : ''; }")
    for _ in range(5):
        page.keyboard.press("Tab")
        if focused() == "BUTTON Search by photo":
            break
    assert focused() == "BUTTON Search by photo"
    page.keyboard.press("Enter")
    expect(page.get_by_role("dialog", name="Search by photo")).to_be_visible()
    assert focused() == "H2 Search by photo"
    page.keyboard.press("Tab")
    assert focused() == "BUTTON Close"
    page.keyboard.press("Tab")
    assert focused() == "BUTTON Choose a photo"
    with page.expect_file_chooser() as chooser:
        page.keyboard.press("Enter")
    chooser.value.set_files(str(chandelier))
    expect(status(page)).to_have_text(FOUND)
    reached: list[str] = []
    for _ in range(40):  # through the chips, the words box, to the results, and round to the first control
        page.keyboard.press("Tab")
        reached.append(focused())
        if reached[-1].startswith("BUTTON Close"):
            break
    links = [r for r in reached if r.startswith("A ")]
    assert len(links) == len(result_links(page)) > 0, reached
    assert any(r.startswith("INPUT") for r in reached) and reached[-1].startswith("BUTTON Close"), reached
    axe = pytest.importorskip("axe_playwright_python.sync_playwright", reason="pip install axe-playwright-python")
    results = axe.Axe().run(page, options={"runOnly": ["wcag2a", "wcag2aa", "best-practice"]})
    serious = [(v["id"], v["impact"], [n["target"] for n in v["nodes"]]) for v in results.response["violations"]
               if v["impact"] in ("serious", "critical")]
    assert serious == []  # axe-core looks inside open shadow roots: the dialog's controls and results are checked


def test_a_click_on_a_result_is_reported_by_beacon_when_the_answer_has_a_query_id(
        page: Page, store: Store, chandelier: Path, tmp_path: Path) -> None:
    """The click analytics other parts of Lookalike receive: `query_id` is added to the steered searches' answers
    here, as they will carry it; the store's product pages and the events endpoint are played by routes."""
    def with_query_id(route: Route) -> None:
        if route.request.post_data_buffer:  # an upload goes as it is: a route cannot send a multipart body again
            route.fallback()
            return
        answer = route.fetch()
        route.fulfill(response=answer, json={**answer.json(), "query_id": "q-test-1"})

    page.route("**/api/v1/search?*", with_query_id)
    page.route("**/api/v1/events", lambda route: route.fulfill(status=204))
    page.route("https://lumen.example/**", lambda route: route.fulfill(body="<p>A product page</p>",
                                                                          content_type="text/html"))
    open_shop(page, store.shop.origin)
    open_dialog(page)
    not_a_photo = tmp_path / "notes.txt"
    not_a_photo.write_text("not a photo")
    with page.expect_file_chooser() as chooser:
        page.get_by_role("button", name="Choose a photo").click()
    chooser.value.set_files(str(not_a_photo))
    expect(status(page)).to_have_text(re.compile(r"^This file is not an image we can read\."))
    expect(page.locator("lookalike-search ul[aria-busy]")).to_have_count(0)  # no spinner left turning
    choose_photo(page, chandelier)
    switch_category_by_chip(page, store)
    position = page.locator("lookalike-search ul").evaluate(
        "ul => [...ul.children].findIndex((li) => li.querySelector('a')) + 1")
    link = page.locator("lookalike-search ul a").first
    href = link.get_attribute("href") or ""
    with page.expect_request("**/api/v1/events") as sent:
        link.click()
    page.wait_for_url(href)  # the shopper lands on the store's product page
    beacon = sent.value
    assert beacon.headers["content-type"].startswith("text/plain")  # a simple request: no preflight
    assert beacon.post_data_json == {"type": "click", "query_id": "q-test-1", "product": href.rsplit("/", 1)[-1],
                                     "position": position}


def test_a_site_not_on_the_allow_list_is_told_so_and_gets_no_cors_headers(page: Page, store: Store) -> None:
    refused: list[str] = []
    page.on("requestfailed", lambda r: refused.append(r.url) if "/api/v1/" in r.url else None)
    open_shop(page, store.elsewhere.origin)
    page.get_by_role("button", name="Search by photo").click()
    expect(status(page)).to_have_text("Photo search is not available on this site.")
    assert refused, "the browser kept the gateway's answer from the page"
    answer = httpx.get(refused[0], headers={"Origin": store.elsewhere.origin})
    assert "access-control-allow-origin" not in answer.headers
    metrics = httpx.get(store.stack.gateway + "/metrics", headers=operator()).text
    assert re.search(r'http_cross_origin_refused_total\{kind="request"\} [1-9]', metrics)


def test_the_gateways_own_page_links_a_feed_product_to_its_link(page: Page, store: Store, chandelier: Path) -> None:
    page.goto(store.stack.gateway + "/")
    page.set_input_files("#photo", str(chandelier))
    expect(page.locator("#status")).to_have_text(re.compile(r"Found \d+ similar products"))
    links = page.locator("#results a.product-link").evaluate_all("links => links.map((a) => a.href)")
    assert links and set(links) <= set(store.links.values()), links
