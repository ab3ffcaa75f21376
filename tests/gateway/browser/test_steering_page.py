"""Steering a photo's search in Chromium costs no second upload and no second forward pass.

Against real processes with random weights: a classifier, a similarity service and two gateways
(the second one holds its photo handles for 2 s only). The catalogue is a few real demo photos
with the demo catalogue's own `source` and `license` columns, whose long values once pushed the
filters past a phone's screen.
"""

from __future__ import annotations

import io
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from PIL import Image
from playwright.sync_api import Page, Request, Route, expect

from tests.gateway.browser.conftest import wider_than_the_viewport
from tests.support import Replica, Services, demo_rows, write_catalog

ScreenShot = Callable[[Page, str], Path]
FOUND = re.compile(r"Found \d+ similar products|No products")
SHORT_TTL_S = 2


@pytest.fixture(scope="module")
def licensed_catalog(shared: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Chairs and lamps, two of each licence the demo catalogue gives them, with all its columns."""
    rows = demo_rows(shared)
    kept = []
    for category in ("chair", "lamp"):
        for licence in sorted({r["license"] for r in rows if r["category"] == category}):
            kept += [r for r in rows if r["category"] == category and r["license"] == licence][:2]
    assert len({r["license"] for r in kept}) > 1
    return write_catalog(shared, tmp_path_factory.mktemp("licensed"), kept, list(rows[0]))


@pytest.fixture(scope="module")
def stack(licensed_catalog: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    from indexing.build import BuildPlan, build_index

    index = tmp_path_factory.mktemp("licensed-index")
    build_index(BuildPlan(licensed_catalog, index, "random", precision="fp32"))
    # The page offers the long `license` values as a filter, the case that once ran past a phone's edge.
    services = Services(index, tmp_path_factory.mktemp("licensed-logs"),
                        extra_env={"GATEWAY_FILTER_COLUMNS": "price,license,source"})
    with services.running(replicas={"gateway_b": Replica("gateway", {"GATEWAY_PHOTO_HANDLE_TTL_S": str(SHORT_TTL_S)})},
                          env={"classifier": {"CLASSIFIER_MAX_BATCH": "1"}}, ready=()) as running:
        running.wait_ready("gateway", timeout_s=600)
        running.wait_ready("gateway_b", timeout_s=600)
        yield running


@pytest.fixture(scope="module")
def sideways_12mp(shared: Path, licensed_catalog: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 12-megapixel landscape sensor image whose EXIF says "rotate 90°" (orientation 6): it shows as portrait."""
    photo = next((licensed_catalog / "chair").iterdir())
    path = tmp_path_factory.mktemp("phone") / "IMG_0001.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.open(photo).convert("RGB").resize((4032, 3024)).save(path, "JPEG", quality=92, exif=exif)
    return path


def classify_count(stack: Services) -> float:
    """The classifier's answered /v1/classify requests: one per forward pass on a photo."""
    text = httpx.get(stack.url("classifier") + "/metrics").text
    found = re.findall(r'http_requests_total\{[^}]*route="/v1/classify"[^}]*\} ([0-9.e+]+)', text)
    return sum(float(value) for value in found)


class Searches:
    """Every photo search the page sends: its query and its body."""

    def __init__(self, page: Page) -> None:
        self.sent: list[tuple[dict[str, list[str]], bytes]] = []
        page.route("**/api/v1/search?*", self._record)  # a route sees the multipart body; the request event not

    def _record(self, route: Route, request: Request) -> None:
        self.sent.append((parse_qs(urlparse(request.url).query), request.post_data_buffer or b""))
        route.fallback()


def jpeg_in(multipart: bytes) -> bytes:
    """The photo a multipart body carries."""
    return multipart[multipart.index(b"\xff\xd8"):].rsplit(b"\r\n--", 1)[0]


def open_page(page: Page, gateway: str) -> None:
    page.goto(gateway + "/")
    expect(page.locator("#catalog-summary")).to_contain_text("Searching")


def wait_found(page: Page) -> None:
    expect(page.locator("#status")).to_have_text(FOUND)
    expect(page.locator("#status")).not_to_have_class(re.compile(r"\berror\b"))


def search_then(page: Page, action: Callable[[], None]) -> None:
    """Do what steers the search, and wait for its answer to be shown."""
    with page.expect_response(lambda r: "/api/v1/search?" in r.url and r.status == 200):
        action()
    wait_found(page)


def steer_six_times(page: Page) -> None:
    """A chip, a filter, a second filter, words, Refine, and the first filter back to "Any"."""
    decided = page.locator('#chips [aria-pressed="true"]').get_attribute("data-category")
    other = "lamp" if decided == "chair" else "chair"
    search_then(page, lambda: page.locator(f'#chips [data-category="{other}"]').click())
    licence = page.locator("#filter-license-is option").nth(1).get_attribute("value") or ""
    search_then(page, lambda: page.select_option("#filter-license-is", licence))
    source = page.locator("#filter-source-is option").nth(1).get_attribute("value") or ""
    search_then(page, lambda: page.select_option("#filter-source-is", source))
    page.fill("#words", "chair")
    search_then(page, lambda: page.press("#words", "Enter"))
    search_then(page, lambda: page.select_option("#filter-license-is", ""))
    if page.locator("#results li").count():
        page.locator("#results li").first.get_by_role("button", name=re.compile("^Like")).click()
        search_then(page, lambda: page.click("#refine-button"))
    else:  # nothing to mark: the words left nothing, so take them away instead
        search_then(page, lambda: page.click("#words-chip"))


def test_a_sideways_12mp_photo_is_sent_small_and_upright(page: Page, stack: Services, sideways_12mp: Path) -> None:
    searches = Searches(page)
    open_page(page, stack.gateway)
    page.set_input_files("#photo", str(sideways_12mp))
    wait_found(page)
    [(_, body)] = searches.sent
    sent = Image.open(io.BytesIO(jpeg_in(body)))
    assert sent.format == "JPEG" and sent.size == (960, 1280), "portrait, 1280 px on the long side"
    assert len(body) < 400_000 < sideways_12mp.stat().st_size


def test_six_steers_cost_one_forward_pass_and_send_no_photo(page: Page, stack: Services, sideways_12mp: Path,
                                                            screenshot: ScreenShot) -> None:
    searches = Searches(page)
    open_page(page, stack.gateway)
    before = classify_count(stack)
    page.set_input_files("#photo", str(sideways_12mp))
    wait_found(page)
    steer_six_times(page)
    assert classify_count(stack) - before == 1, "the first search's forward pass, and no other"
    first, *steers = searches.sent
    assert len(steers) == 6 and first[1] and "photo" not in first[0]
    handle = steers[0][0]["photo"]
    assert all(body == b"" and query["photo"] == handle for query, body in steers), "no steer sends the photo"
    assert steers[0][0].get("category") and steers[2][0]["where"] and steers[3][0]["q"] == ["chair"]
    screenshot(page, "steered-six-times")


def test_an_expired_handle_is_sent_again_without_the_shopper_noticing(page: Page, stack: Services,
                                                                      sideways_12mp: Path) -> None:
    searches = Searches(page)
    answers: list[int] = []
    page.on("response", lambda r: answers.append(r.status) if "/api/v1/search?" in r.url else None)
    open_page(page, stack.url("gateway_b"))
    page.set_input_files("#photo", str(sideways_12mp))
    wait_found(page)
    time.sleep(SHORT_TTL_S + 0.5)  # gateway_b holds handles for 2 s: this one expires on purpose
    decided = page.locator('#chips [aria-pressed="true"]').get_attribute("data-category")
    other = "lamp" if decided == "chair" else "chair"
    page.locator(f'#chips [data-category="{other}"]').click()
    expect(page.locator(f'#chips [data-category="{other}"]')).to_have_attribute("aria-pressed", "true")
    wait_found(page)
    assert answers == [200, 410, 200], "the expired handle, then the photo sent again"
    (_, upload), (expired, _), (again, body) = searches.sent
    assert "photo" in expired and "photo" not in again and jpeg_in(body) == jpeg_in(upload)
    assert again["category"] == [other], "the photo sent again carries the steer"


def test_two_gateways_share_no_handle_and_the_page_works_across_them(page: Page, stack: Services,
                                                                     sideways_12mp: Path) -> None:
    """Searches go to the two gateways in turn (a load balancer with no affinity)."""
    turns: list[tuple[str, int]] = []

    def in_turn(route: Route, request: Request) -> None:
        gateway = [stack.gateway, stack.url("gateway_b")][len(turns) % 2]
        answer = route.fetch(url=gateway + request.url[len(stack.gateway):])
        turns.append((gateway, answer.status))
        route.fulfill(response=answer)

    page.route("**/api/v1/search?*", in_turn)
    open_page(page, stack.gateway)
    page.set_input_files("#photo", str(sideways_12mp))
    wait_found(page)
    steer_six_times(page)
    assert (stack.url("gateway_b"), 410) in turns, "gateway_b never held gateway A's handle"
    assert all(status in (200, 410) for _, status in turns)


def test_on_a_phone_the_filters_fit_the_screen(phone: Page, stack: Services, sideways_12mp: Path,
                                              screenshot: ScreenShot) -> None:
    open_page(phone, stack.gateway)
    phone.set_input_files("#photo", str(sideways_12mp))
    wait_found(phone)
    expect(phone.locator("#filter-license-is")).to_be_visible()
    assert wider_than_the_viewport(phone) == []
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390
    screenshot(phone, "phone-filters")
