"""What the page does when a vote is refused, and with a search a newer one supersedes: headless Chromium
against the three real services (the shared stack)."""

from __future__ import annotations

import json
import re

from playwright.sync_api import Page, Request, Route, expect

from tests.support import Services

REFUSED = re.compile("the shop did not save it")


def search_words(page: Page, words: str) -> None:
    page.get_by_label("Search by words").fill(words)
    page.keyboard.press("Enter")


def test_a_vote_the_server_refuses_says_why(page: Page, services: Services) -> None:
    page.goto(services.gateway + "/")
    search_words(page, "chair")
    expect(page.locator("#status")).to_have_text(re.compile(r"Found \d+ products for “chair”"))

    def altered(route: Route) -> None:  # a query_id this gateway never issued: the real gateway answers 422
        vote = json.loads(route.request.post_data or "{}")
        route.continue_(post_data=json.dumps({**vote, "query_id": vote["query_id"][:-6] + "AAAAAA"}))

    page.route("**/api/v1/feedback", altered)
    like = page.locator("#results li").first.locator(".mark-like")
    with page.expect_response("**/api/v1/feedback") as refused:
        like.click()
    assert refused.value.status == 422
    expect(page.locator("#status")).to_have_text(REFUSED)
    expect(page.locator("#status")).to_contain_text("query_id")
    expect(like).to_have_attribute("aria-pressed", "true")  # the mark still counts for Refine
    page.unroute("**/api/v1/feedback")

    statuses: list[int] = []
    page.on("response", lambda r: statuses.append(r.status) if r.url.endswith("/api/v1/feedback") else None)
    for _ in range(70):  # each second click takes the mark back, sending nothing: 35 votes, over 30 a minute
        like.click()
    expect(page.locator("#status")).to_have_text(REFUSED)
    expect(page.locator("#status")).to_contain_text("Too many votes")
    assert 429 in statuses and statuses[0] == 201


def test_a_search_superseded_by_a_newer_one_is_aborted(page: Page, services: Services) -> None:
    held: list[Route] = []
    failed: list[Request] = []
    page.on("requestfailed", lambda request: failed.append(request))
    page.route(lambda url: "q=sofa" in url, lambda route: held.append(route))  # held: no answer comes
    page.goto(services.gateway + "/")
    search_words(page, "sofa")
    page.wait_for_function("() => document.body.classList.contains('busy')")
    assert len(held) == 1
    search_words(page, "chair")
    expect(page.locator("#status")).to_have_text(re.compile(r"Found \d+ products for “chair”"))
    if not failed:
        page.wait_for_event("requestfailed", lambda r: "q=sofa" in r.url)
    assert [r.failure for r in failed if "q=sofa" in r.url] == ["net::ERR_ABORTED"]
    expect(page.locator("#results-title")).to_have_text("Products matching “chair”")
