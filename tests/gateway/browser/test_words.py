"""Words on the page, in headless Chromium against the three real services: words alone, then a photo added."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.support import Services

ScreenShot = Callable[[Page, str], Path]


def names(page: Page) -> list[str]:
    return page.locator("#results .name").all_inner_texts()


def test_a_shopper_types_words_then_adds_a_photo_to_narrow_its_matches(
        page: Page, services: Services, small_catalog: Path, screenshot: ScreenShot) -> None:
    page.goto(services.gateway + "/")
    expect(page.locator("#catalog-summary")).to_have_text(re.compile(r"Searching \d+ photos"))

    page.fill("#words", "adde")
    page.press("#words", "Enter")
    expect(page.locator("#status")).to_have_text(re.compile(r"Found \d+ products for “adde”\."))
    expect(page.locator("#results-title")).to_have_text("Products matching “adde”")
    assert names(page) and all("ADDE" in name for name in names(page))
    expect(page.locator("#words-chip")).to_be_visible()
    expect(page.locator("#words-chip")).to_have_text(re.compile("“adde”"))
    expect(page.locator("#decision")).to_be_hidden()
    screenshot(page, "words-alone")

    photo = small_catalog / "chair" / sorted(p.name for p in (small_catalog / "chair").iterdir())[-1]
    page.set_input_files("#photo", str(photo))
    expect(page.locator("#decision")).to_be_visible()
    chair = page.locator('#chips [data-category="chair"]')
    if chair.get_attribute("aria-pressed") != "true":  # random weights may guess another category
        chair.click()
    expect(page.locator("#status")).to_have_text(re.compile(r"Found \d+ similar products matching “adde”\."))
    expect(page.locator("#results-title")).to_have_text("Similar products matching “adde”")
    assert names(page) and all("ADDE" in name for name in names(page))
    screenshot(page, "words-and-photo")

    page.click("#words-chip")
    expect(page.locator("#words-chip-row")).to_be_hidden()
    expect(page.locator("#status")).to_have_text(re.compile(r"^Found \d+ similar products\.$"))
    expect(page.locator("#words")).to_be_focused()
    assert not all("ADDE" in name for name in names(page))  # the photo's plain neighbours again


def test_words_with_nothing_to_search_show_the_servers_message(page: Page, services: Services) -> None:
    page.goto(services.gateway + "/")
    page.fill("#words", "the *")
    page.press("#words", "Enter")
    expect(page.locator("#status")).to_have_text(re.compile("no word to look for"))
