"""The staff page (/staff) in headless Chromium, over real traffic: a second gateway with an admin token and a
search log of its own, in front of the suite's classifier and similarity processes (random weights)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from axe_playwright_python.sync_playwright import Axe  # type: ignore[import-untyped]
from playwright.sync_api import Page, expect

from tests.gateway.browser.conftest import wider_than_the_viewport
from tests.support import REPO, Services, free_port

TOKEN = "staff-page-admin-token"
DOCS_SCREENSHOT = REPO / "docs" / "staff.png"


def seeded(gateway: str, query_photos: list[tuple[Path, str]]) -> None:
    """Real searches of every kind, a category switch, clicks and a purchase."""
    with httpx.Client(base_url=gateway, timeout=60) as client:
        answers: list[Any] = []
        for photo, _ in query_photos[:3]:
            found = client.post("/api/v1/search", files={"image": (photo.name, photo.read_bytes(), "image/jpeg")})
            assert found.status_code == 200, found.text
            answers.append(found.json())
        first = answers[0]
        other = next(c for c in first["probabilities"] if c != first["category"])
        assert client.post("/api/v1/search", params={"photo": first["photo"], "category": other}).status_code == 200
        for q in ("zebra skin rug", "zebra skin rug", "lamp"):
            answers.append(client.get("/api/v1/search/text", params={"q": q}).json())
        for answer in answers[:2]:
            event = {"type": "click", "query_id": answer["query_id"], "product": answer["results"][0]["id"]}
            assert client.post("/api/v1/events", json=event).status_code == 202
        purchase = {"type": "purchase", "query_id": answers[0]["query_id"], "product": answers[0]["results"][0]["id"]}
        assert client.post("/api/v1/events", json=purchase).status_code == 202


@pytest.fixture(scope="module")
def staff_gateway(services: Services, query_photos: list[tuple[Path, str]],
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    database = tmp_path_factory.mktemp("staff-db") / "feedback.sqlite3"
    stack = Services(services.index, tmp_path_factory.mktemp("staff-logs"),
                     ports={**services.ports, "gateway": free_port()},
                     extra_env={"LOOKALIKE_ADMIN_TOKEN": TOKEN, "GATEWAY_FEEDBACK_DB_URL": f"sqlite:///{database}"})
    with stack.running(["gateway"]):
        seeded(stack.gateway, query_photos)
        yield stack.gateway


def sign_in(page: Page, gateway: str, token: str = TOKEN) -> None:
    page.goto(gateway + "/staff")
    expect(page.get_by_label("Operator token")).to_be_visible()
    page.get_by_label("Operator token").fill(token)
    page.get_by_role("button", name="Show the reports").click()


def test_the_staff_page_asks_for_the_token_once_then_draws_every_panel(page: Page, staff_gateway: str) -> None:
    sign_in(page, staff_gateway, "not-the-token")
    expect(page.locator("#token-error")).to_contain_text("not accepted")
    page.get_by_label("Operator token").fill(TOKEN)
    page.get_by_role("button", name="Show the reports").click()
    expect(page.locator("body[data-loaded=true]")).to_be_attached()

    expect(page.locator("#per-day-chart svg rect")).not_to_have_count(0)
    expect(page.locator("#scores-chart svg rect")).not_to_have_count(0)
    expect(page.locator("#figures")).to_contain_text("Searches7")
    expect(page.locator("#no-results-table")).to_contain_text("zebra skin rug")
    expect(page.locator("#switches-table tbody tr")).to_have_count(1)
    expect(page.locator("#categories-table tbody tr")).to_have_count(5)
    expect(page.locator("#versions-table")).to_contain_text("(serving)")

    with page.expect_download() as download:
        page.get_by_role("link", name='Download "Words that found nothing" as CSV').click()
    assert download.value.suggested_filename == "words-no-results.csv"
    csv = Path(download.value.path()).read_bytes().decode().split("\r\n")
    assert csv[0] == "Words,Searches" and "zebra skin rug,2" in csv[1:], csv

    violations = [v for v in Axe().run(page).response["violations"] if v["impact"] in ("serious", "critical")]
    assert violations == [], [(v["id"], [n["target"] for n in v["nodes"]]) for v in violations]

    page.reload()  # the token is kept for the tab: no second prompt
    expect(page.locator("body[data-loaded=true]")).to_be_attached()
    expect(page.locator("#token-form")).to_be_hidden()

    if os.environ.get("LOOKALIKE_SCREENSHOT") == "1":
        page.set_viewport_size({"width": 1280, "height": 800})
        page.evaluate("document.documentElement.style.zoom = '0.6'; window.scrollTo(0, 0)")
        page.screenshot(path=str(DOCS_SCREENSHOT), animations="disabled")
        assert DOCS_SCREENSHOT.stat().st_size < 300_000, "keep the docs' picture small"


def test_the_staff_page_is_readable_at_phone_width(phone: Page, staff_gateway: str) -> None:
    sign_in(phone, staff_gateway)
    expect(phone.locator("body[data-loaded=true]")).to_be_attached()
    assert wider_than_the_viewport(phone) == []


def clicks(gateway: str) -> int:
    overview = httpx.get(f"{gateway}/api/v1/staff/overview", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    return int(overview.json()["clicks"])


def test_the_shoppers_page_reports_a_click_on_a_result_as_a_beacon(
        page: Page, staff_gateway: str, query_photos: list[tuple[Path, str]]) -> None:
    before = clicks(staff_gateway)
    page.goto(staff_gateway + "/")
    page.set_input_files("#photo", str(query_photos[0][0]))
    expect(page.locator("#results .card")).not_to_have_count(0)
    with page.expect_response("**/api/v1/events") as sent:
        page.locator("#results .card").nth(1).get_by_role("button", name="More like this").click()
    assert sent.value.status == 202 and sent.value.json() == {"accepted": True}
    assert sent.value.request.headers["content-type"].startswith("text/plain")
    for _ in range(50):  # the writer task stores it a moment later
        if clicks(staff_gateway) == before + 1:
            break
        time.sleep(0.2)
    assert clicks(staff_gateway) == before + 1
