"""Marking results and refining, in headless Chromium against the three real services (random weights)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from playwright.sync_api import Page, expect

from tests.support import Services

ScreenShot = Callable[[Page, str], Path]
FOUND = re.compile(r"Found \d+ similar products")


@pytest.fixture(scope="module")
def photo(query_photos: list[tuple[Path, str]]) -> Path:
    return query_photos[0][0]


def card_ids(page: Page) -> list[str]:
    return page.locator("#results li").evaluate_all("cards => cards.map(c => c.dataset.id)")


def test_a_shopper_likes_and_unlikes_results_refines_and_sees_the_list_change(
        page: Page, services: Services, photo: Path, screenshot: ScreenShot) -> None:
    page.goto(services.gateway + "/")
    with page.expect_response(lambda r: "/api/v1/search" in r.url) as searched:
        page.set_input_files("#photo", str(photo))
    expect(page.locator("#status")).to_have_text(FOUND)
    before = card_ids(page)
    refine = page.get_by_role("button", name="Refine", exact=True)
    expect(refine).to_be_disabled()

    cards = page.locator("#results li")
    with page.expect_response(lambda r: r.url.endswith("/api/v1/feedback")) as liked:
        cards.nth(2).get_by_role("button", name=re.compile("^Like")).click()
    assert liked.value.status == 201, liked.value.text()
    vote = json.loads(liked.value.request.post_data or "{}")
    assert vote["query"] is None and vote["vote"] == "like" and vote["item_id"] == before[2] and vote["category"]
    assert vote["query_id"] == searched.value.json()["query_id"]  # the answer that showed it
    unlike = cards.nth(0).get_by_role("button", name=re.compile("^Not like this"))
    with page.expect_response(lambda r: r.url.endswith("/api/v1/feedback")) as unliked:
        unlike.click()
    assert unliked.value.status == 201
    expect(unlike).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#refine-count")).to_have_text("1 liked, 1 not like this.")
    screenshot(page, "desktop-marked")

    with page.expect_response(lambda r: "/api/v1/search" in r.url) as answer:
        refine.click()
    query = parse_qs(urlparse(answer.value.url).query)
    assert query["like"] == [before[2]] and query["unlike"] == [before[0]]
    expect(page.locator("#status")).to_have_text(FOUND)
    after = card_ids(page)
    assert before[0] not in after and after != before
    expect(page.locator(f'#results li[data-id="{before[2]}"] .mark-like')).to_have_attribute("aria-pressed", "true")
    screenshot(page, "desktop-refined")


def test_marks_work_from_the_keyboard_and_by_touch(page: Page, phone: Page, services: Services, photo: Path) -> None:
    page.goto(services.gateway + "/")
    page.set_input_files("#photo", str(photo))
    expect(page.locator("#status")).to_have_text(FOUND)
    like = page.locator("#results li").first.locator(".mark-like")
    like.focus()
    page.keyboard.press("Space")
    expect(like).to_have_attribute("aria-pressed", "true")
    page.keyboard.press("Enter")  # pressing again takes the mark back
    expect(like).to_have_attribute("aria-pressed", "false")
    expect(page.get_by_role("button", name="Refine", exact=True)).to_be_disabled()

    phone.goto(services.gateway + "/")
    phone.set_input_files("#photo", str(photo))
    expect(phone.locator("#status")).to_have_text(FOUND)
    unlike = phone.locator("#results li").first.locator(".mark-unlike")
    box = unlike.bounding_box()
    assert box and box["height"] >= 44, "a touch target at least 44 px high"
    unlike.tap()
    expect(unlike).to_have_attribute("aria-pressed", "true")
    expect(phone.get_by_role("button", name="Refine", exact=True)).to_be_enabled()


def test_results_of_words_are_marked_taught_and_refined_too(page: Page, services: Services,
                                                           screenshot: ScreenShot) -> None:
    page.goto(services.gateway + "/")
    page.get_by_label("Search by words").fill("chair")
    with page.expect_response(lambda r: "/api/v1/search/text" in r.url) as searched:
        page.keyboard.press("Enter")
    expect(page.locator("#status")).to_have_text(re.compile(r"Found \d+ products for “chair”"))
    before = card_ids(page)
    cards = page.locator("#results li")
    with page.expect_response(lambda r: r.url.endswith("/api/v1/feedback")) as liked:
        cards.nth(1).get_by_role("button", name=re.compile("^Like")).click()
    assert liked.value.status == 201, liked.value.text()
    assert json.loads(liked.value.request.post_data or "{}") == {
        "query": "chair", "item_id": before[1], "vote": "like", "query_id": searched.value.json()["query_id"]}
    cards.nth(0).get_by_role("button", name=re.compile("^Not like this")).click()

    with page.expect_response(lambda r: "/api/v1/search/text" in r.url) as answer:
        page.get_by_role("button", name="Refine", exact=True).click()
    query = parse_qs(urlparse(answer.value.url).query)
    assert query["like"] == [before[1]] and query["unlike"] == [before[0]] and query["q"] == ["chair"]
    expect(page.locator("#status")).to_have_text(re.compile(r"Found \d+ products like the ones you liked"))
    assert before[0] not in card_ids(page)
    expect(page.locator(f'#results li[data-id="{before[1]}"] .mark-like')).to_have_attribute("aria-pressed", "true")
    screenshot(page, "desktop-words-refined")
