"""The page's other states, each on its own real stack: a store with no catalogue yet, product metadata
(price, link) from products.csv, and a service that goes down and comes back."""

from __future__ import annotations

import csv
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.support import Services, write_csv

ScreenShot = Callable[[Page, str], Path]
PER_CATEGORY = 2
FOUND = re.compile(r"Found \d+ similar products")


@pytest.fixture(scope="module")
def bare_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    """A fresh install: no index built yet, so the similarity service is up but has nothing to search."""
    stack = Services(tmp_path_factory.mktemp("no-index"), tmp_path_factory.mktemp("logs"))
    with stack.running(["similarity", "gateway"], ready=(), alive=("similarity", "gateway")):  # no classifier: down
        yield stack


@pytest.fixture(scope="module")
def priced_catalog(small_catalog: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A few real photos per category, with the `price` and `url` columns a store's products.csv may have."""
    root = tmp_path_factory.mktemp("priced")
    with open(small_catalog / "products.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    kept = [row for category in sorted({r["category"] for r in rows})
            for row in [r for r in rows if r["category"] == category][:PER_CATEGORY]]
    for number, row in enumerate(kept):
        (root / row["category"]).mkdir(exist_ok=True)
        shutil.copy(small_catalog / row["file"], root / row["file"])
        row["price"] = f"€{100 + number},00"
        row["url"] = f"https://shop.example/products/{row['id']}"
        row["item_group_id"] = ""  # each photo a product of its own, so each shows its own price and link
    # One chair carries a script instead of a web address: it must never become a link.
    next(row for row in kept if row["category"] == "chair")["url"] = "javascript:alert(1)"
    write_csv(root / "products.csv", kept)
    return root


@pytest.fixture(scope="module")
def priced_store(priced_catalog: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    from indexing.build import BuildPlan, build_index

    index = tmp_path_factory.mktemp("priced-index")
    build_index(BuildPlan(priced_catalog, index, "random", precision="fp32"))
    with Services(index, tmp_path_factory.mktemp("logs")).running() as stack:
        yield stack


def test_an_empty_catalogue_tells_the_store_how_to_add_images(
        page: Page, phone: Page, bare_store: Services, screenshot: ScreenShot) -> None:
    info = httpx.get(bare_store.gateway + "/api/v1/catalog").json()
    assert info["state"] == "empty" and info["categories"] == {}
    for tab, name in ((page, "desktop"), (phone, "phone")):
        tab.goto(bare_store.gateway + "/")
        notice = tab.locator("#notice")
        expect(notice).to_be_visible()
        expect(notice).to_have_attribute("role", "alert")
        expect(notice).to_contain_text("This store has no products to search yet")
        expect(notice).to_contain_text("reference_images/<category>/")
        expect(notice).to_contain_text("make index")
        screenshot(tab, f"{name}-empty-catalogue")


def test_results_show_price_and_a_link_from_products_csv(
        page: Page, priced_store: Services, priced_catalog: Path, screenshot: ScreenShot) -> None:
    page.goto(priced_store.gateway + "/")
    page.set_input_files("#photo", str(next((priced_catalog / "sofa").iterdir())))
    expect(page.locator("#status")).to_have_text(FOUND)
    with page.expect_response(re.compile(r"category=chair")) as answer:
        page.locator('#chips [data-category="chair"]').click()
    results = answer.value.json()["results"]
    expect(page.locator("#status")).to_have_text(FOUND)
    cards = page.locator("#results li")
    expect(cards).to_have_count(PER_CATEGORY)
    for card, result in zip(cards.all(), results):
        expect(card.locator(".price")).to_have_text(result["extra"]["price"])
        link = card.get_by_role("link", name=re.compile("^View product"))
        if result["extra"]["url"].startswith("https:"):
            expect(link).to_have_attribute("href", result["extra"]["url"])
            expect(link).to_have_attribute("target", "_blank")
            expect(link).to_have_attribute("rel", "noopener noreferrer")
        else:
            expect(link).to_have_count(0)
    assert any(not r["extra"]["url"].startswith("https:") for r in results), "the unsafe url is among the chairs"
    screenshot(page, "desktop-price-and-link")


def test_a_service_that_is_down_is_explained_and_try_again_recovers(
        page: Page, priced_store: Services, priced_catalog: Path, screenshot: ScreenShot) -> None:
    priced_store.stop("classifier")
    try:
        page.goto(priced_store.gateway + "/")
        expect(page.locator("#notice")).to_contain_text("Search is unavailable right now")
        expect(page.locator("#notice")).to_contain_text("classifier service is unreachable")
        page.set_input_files("#photo", str(next((priced_catalog / "lamp").iterdir())))
        status = page.locator("#status")
        expect(status).to_have_text("The classifier service is unavailable right now. Please try again shortly.")
        expect(status).to_have_class(re.compile(r"\berror\b"))
        expect(page.get_by_role("button", name="Try again")).to_be_visible()
        screenshot(page, "desktop-service-down")
    finally:
        priced_store.start("classifier")
        priced_store.wait_ready()
    page.get_by_role("button", name="Try again").click()
    expect(page.locator("#status")).to_have_text(FOUND)
    expect(page.get_by_role("button", name="Try again")).to_be_hidden()
