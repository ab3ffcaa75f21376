"""The shopper steers the search in Chromium: a region drawn on the photo, a price range, a cutoff.

Against the gateway tests' own catalogue (tests/gateway/conftest.py: chairs with two photos, a price
and an in_stock column), served by real processes with random weights.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from playwright.sync_api import Page, Request, expect

from tests.gateway.product_catalog import collage
from tests.support import Services

ScreenShot = Callable[[Page, str], Path]
FOUND = re.compile(r"Found \d+ similar products")


@pytest.fixture(scope="module")
def collage_file(products_catalog: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    png, _ = collage(products_catalog, [2, 3, 4, 5])
    path = tmp_path_factory.mktemp("collage") / "collage.png"
    path.write_bytes(png)
    return path


def open_page(page: Page, stack: Services, query: str = "") -> None:
    page.goto(stack.gateway + "/" + query)
    expect(page.locator("#catalog-summary")).to_have_text("Searching 20 photos in 2 categories.")


def upload_in_chairs(page: Page, photo: Path) -> None:
    """Upload, then make sure the chairs are searched whatever random weights decided."""
    page.set_input_files("#photo", str(photo))
    expect(page.locator("#status")).to_have_text(FOUND)
    chip = page.locator('#chips [data-category="chair"]')
    if chip.get_attribute("aria-pressed") != "true":
        chip.click()
        expect(chip).to_have_attribute("aria-pressed", "true")
        expect(page.locator("#status")).to_have_text(FOUND)


def searched_box(request: Request) -> list[float]:
    return [float(v) for v in parse_qs(urlparse(request.url).query)["box"][0].split(",")]


def is_search(request: Request) -> bool:
    return "/api/v1/search" in request.url and "box=" in request.url


def result_names(page: Page) -> list[str]:
    return page.locator("#results .name").all_text_contents()


def test_a_box_drawn_with_the_mouse_searches_that_part_of_the_photo(
        page: Page, products_stack: Services, collage_file: Path, screenshot: ScreenShot) -> None:
    open_page(page, products_stack)
    upload_in_chairs(page, collage_file)
    expect(page.locator("#box")).to_be_hidden()
    preview = page.locator("#preview").bounding_box()
    assert preview is not None
    left, top, width, height = preview["x"], preview["y"], preview["width"], preview["height"]
    with page.expect_request(is_search) as searched:
        page.mouse.move(left + width / 2, top + height / 2)  # from the middle, where the four tiles meet...
        page.mouse.down()
        page.mouse.move(left + width * 0.75, top + height * 0.25, steps=4)
        page.mouse.move(left + width + 20, top - 20, steps=4)  # ...past the top right corner: that tile exactly
        page.mouse.up()
    assert searched_box(searched.value) == pytest.approx([0.5, 0, 1, 0.5], abs=0.003)
    expect(page.locator("#box")).to_be_visible()
    expect(page.locator("#status")).to_have_text(FOUND)
    expect(page.locator("#results .name").first).to_have_text("Chair 3")  # the tile in the top right corner
    screenshot(page, "region-drawn-with-the-mouse")


def test_a_box_is_placed_and_moved_with_the_keyboard_with_visible_focus(
        page: Page, products_stack: Services, collage_file: Path, screenshot: ScreenShot) -> None:
    open_page(page, products_stack)
    upload_in_chairs(page, collage_file)
    page.locator("#region-start").focus()
    with page.expect_request(is_search) as placed:
        page.keyboard.press("Enter")
    assert searched_box(placed.value) == pytest.approx([0.2, 0.2, 0.8, 0.8], abs=1e-4)
    box = page.locator("#box")
    expect(box).to_be_focused()
    assert box.evaluate("b => b.matches(':focus-visible') && getComputedStyle(b).outlineStyle !== 'none'")
    expect(page.locator("#status")).to_have_text(FOUND)
    with page.expect_request(is_search) as moved:
        for _ in range(5):
            page.keyboard.press("ArrowRight")  # each press is a key released: the search waits for the last one
        page.keyboard.press("Shift+ArrowDown")
    assert searched_box(moved.value) == pytest.approx([0.3, 0.2, 0.9, 0.82], abs=1e-4)
    expect(page.locator("#status")).to_have_text(FOUND)
    screenshot(page, "region-moved-with-the-keyboard")
    with page.expect_request(lambda r: "/api/v1/search" in r.url and "box=" not in r.url):
        page.locator("#region-clear").click()
    expect(box).to_be_hidden()


def test_a_price_range_narrows_the_grid(page: Page, products_stack: Services, products_catalog: Path,
                                        screenshot: ScreenShot) -> None:
    open_page(page, products_stack)
    expect(page.locator("#filters")).to_be_visible()
    upload_in_chairs(page, products_catalog / "chair" / sorted(p.name for p in (products_catalog / "chair").iterdir())[0])
    before = result_names(page)
    assert len(before) == 7  # eight chairs, two of them one group
    with page.expect_request(lambda r: "where=price%3E%3D300" in r.url):
        page.fill("#filter-price-min", "300")
        page.locator("#filter-price-min").press("Tab")
    with page.expect_request(lambda r: "where=price%3C%3D500" in r.url and "where=price%3E%3D300" in r.url):
        page.fill("#filter-price-max", "500")
        page.locator("#filter-price-max").press("Tab")
    expect(page.locator("#results .card")).to_have_count(3)
    prices = [float(p) for p in page.locator("#results .price").all_text_contents()]
    assert sorted(prices) == [300, 400, 500]
    assert result_names(page) != before
    screenshot(page, "price-range")


def test_no_close_match_is_said_when_nothing_clears_the_cutoff(page: Page, products_stack: Services,
                                                               query_photos: list[tuple[Path, str]]) -> None:
    open_page(page, products_stack, "?min_score=0.9999")  # a query photo is in no catalogue: nothing is that close
    page.set_input_files("#photo", str(query_photos[0][0]))
    expect(page.locator("#no-match")).to_have_text("No close match in this category.")
    expect(page.locator("#results .card")).to_have_count(0)


def test_a_box_drawn_with_a_finger_on_a_phone_searches_that_part(
        phone: Page, products_stack: Services, collage_file: Path, screenshot: ScreenShot) -> None:
    """Real touch events (Chromium's DevTools protocol), which the page sees as pointer events of type touch."""
    open_page(phone, products_stack)
    upload_in_chairs(phone, collage_file)
    preview = phone.locator("#preview").bounding_box()
    assert preview is not None
    left, top, width, height = preview["x"], preview["y"], preview["width"], preview["height"]
    devtools = phone.context.new_cdp_session(phone)

    def touch(kind: str, x: float = 0, y: float = 0) -> None:
        points = [] if kind == "touchEnd" else [{"x": x, "y": y}]
        devtools.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": points})

    middle_x, middle_y = left + width / 2, top + height / 2
    with phone.expect_request(is_search) as searched:
        touch("touchStart", middle_x, middle_y)
        for step in range(1, 9):  # toward the top right corner, and 20 px past it
            touch("touchMove", middle_x + step * (width / 2 + 20) / 8, middle_y - step * (height / 2 + 20) / 8)
        touch("touchEnd")
    assert searched_box(searched.value) == pytest.approx([0.5, 0, 1, 0.5], abs=0.003)
    expect(phone.locator("#box")).to_be_visible()
    expect(phone.locator("#status")).to_have_text(FOUND)
    expect(phone.locator("#results .name").first).to_have_text("Chair 3")
    screenshot(phone, "phone-region-drawn-by-touch")
