"""Products not photos, a region of the photo, filters and a cutoff: end to end, on a catalogue this test writes.

Real processes on loopback, real photos from ../shared, real Faiss, `random` weights. The catalogue:
eight chairs with two photos each, a `price` (the last one has none) and an `in_stock` column, the
first two chairs variants of one group; and four lamps with one photo each.
"""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.gateway.product_catalog import CHAIRS, LAMPS, chair_id, collage, photos_of
from tests.support import Services


@pytest.fixture(scope="module")
def catalog(products_catalog: Path) -> Path:
    return products_catalog


@pytest.fixture(scope="module")
def stack(products_stack: Services) -> Services:
    return products_stack


def search(stack: Services, photo: bytes, filename: str = "photo.jpg", **params: object) -> httpx.Response:
    return httpx.post(f"{stack.gateway}/api/v1/search", params=params,
                      files={"image": (filename, photo, "image/png" if filename.endswith(".png") else "image/jpeg")},
                      timeout=60)


def results(response: httpx.Response) -> list[dict]:
    assert response.status_code == 200, response.text
    found = response.json()["results"]
    ids = [r["id"] for r in found]
    assert len(ids) == len(set(ids)), f"an id repeats: {ids}"
    groups = [r["group_id"] for r in found]
    assert len(groups) == len(set(groups)), f"a variant group repeats: {groups}"
    return found


def error(response: httpx.Response, status: int = 422) -> dict[str, str]:
    assert response.status_code == status, response.text
    return response.json()["error"]


# Products, not photos

def test_one_photo_of_a_two_photo_product_finds_that_product_first_and_only_once(stack: Services,
                                                                                 catalog: Path) -> None:
    second_photo = photos_of(catalog, chair_id(4))[1]
    found = results(search(stack, second_photo.read_bytes(), category="chair", k=10))
    assert found[0]["id"] == chair_id(4) and found[0]["score"] == pytest.approx(1.0, abs=1e-4)
    assert found[0]["photos"] == 2 and found[0]["image_url"].endswith("?photo=1")
    assert [r["id"] for r in found].count(chair_id(4)) == 1
    assert len(found) == CHAIRS - 1  # eight chairs, two of them variants of one group
    pair = next(r for r in found if r["group_id"] == "pair")
    assert pair["variants"] == 2 and pair["id"] in {chair_id(0), chair_id(1)}


def test_k_counts_products_not_photos(stack: Services, catalog: Path) -> None:
    photo = photos_of(catalog, chair_id(2))[0]
    assert len(results(search(stack, photo.read_bytes(), category="chair", k=5))) == 5


def test_the_matched_photo_is_the_one_served(stack: Services, catalog: Path) -> None:
    photo = photos_of(catalog, chair_id(5))[1]
    url = results(search(stack, photo.read_bytes(), category="chair", k=1))[0]["image_url"]
    served = Image.open(io.BytesIO(httpx.get(stack.gateway + url).content))
    first = Image.open(io.BytesIO(httpx.get(stack.gateway + f"/api/v1/items/{chair_id(5)}/image").content))
    assert served.size == first.size and served.tobytes() != first.tobytes()
    assert httpx.get(stack.gateway + f"/api/v1/items/{chair_id(5)}/image", params={"photo": 2}).status_code == 404


def test_more_like_this_leaves_the_products_whole_group_out(stack: Services) -> None:
    response = httpx.get(f"{stack.gateway}/api/v1/items/{chair_id(0)}/similar", params={"k": 10})
    found = results(response)
    assert {chair_id(0), chair_id(1)}.isdisjoint(r["id"] for r in found)
    assert len(found) == CHAIRS - 2


# A cutoff

def test_min_score_leaves_out_what_scores_below_it(stack: Services, catalog: Path) -> None:
    photo = photos_of(catalog, chair_id(3))[0]
    body = search(stack, photo.read_bytes(), category="chair", k=10, min_score=0.9999).json()
    assert body["min_score"] == 0.9999
    assert [r["id"] for r in body["results"]][:1] == [chair_id(3)]
    assert all(r["score"] >= 0.9999 for r in body["results"])
    assert error(search(stack, photo.read_bytes(), min_score=1.5))


# A region of the photo

def test_a_box_around_one_photo_of_a_collage_finds_that_product(stack: Services, catalog: Path) -> None:
    """Identical pixels give identical embeddings: see `collage`."""
    png, boxes = collage(catalog, [2, 3, 4, 5])
    for n, box in boxes.items():
        found = results(search(stack, png, "collage.png", category="chair", k=3, box=box))
        assert found[0]["id"] == chair_id(n) and found[0]["score"] >= 0.9999, (box, found[0])


@pytest.mark.parametrize("box, says", [
    ("0,0,1", "four numbers"), ("a,b,c,d", "four numbers"), ("0,0,1.2,1", "from 0 to 1"), ("-0.1,0,1,1", "from 0 to 1"),
    ("0.6,0,0.4,1", "inverted"), ("0,0.5,1,0.5", "inverted"), ("0,0,0.1,0.1", "pixels"),
])
def test_a_box_out_of_range_inverted_malformed_or_too_small_is_a_422(stack: Services, catalog: Path,
                                                                      box: str, says: str) -> None:
    photo = photos_of(catalog, chair_id(0))[0].read_bytes()
    assert says in error(search(stack, photo, box=box))["message"]


# Filters on the catalogue's own columns

def test_every_result_passes_the_filters_and_k_come_back_when_enough_match(stack: Services, catalog: Path) -> None:
    photo = photos_of(catalog, chair_id(6))[0].read_bytes()
    found = results(search(stack, photo, category="chair", k=3, where=["price>=300"]))
    assert len(found) == 3 and all(float(r["extra"]["price"]) >= 300 for r in found)
    found = results(search(stack, photo, category="chair", k=10, where=["price<=400", "in_stock=yes"]))
    assert {r["id"] for r in found} == {chair_id(0), chair_id(2)}


def test_numbers_compare_as_numbers_and_an_empty_cell_never_matches(stack: Services, catalog: Path) -> None:
    photo = photos_of(catalog, chair_id(7))[0].read_bytes()
    found = results(search(stack, photo, category="chair", k=10, where=["price<1000"]))  # "800" > "1000" as text
    assert chair_id(7) not in {r["id"] for r in found}  # it has no price
    assert len(found) == CHAIRS - 2  # chair-0 and chair-1 are one group
    assert chair_id(7) not in {r["id"] for r in results(search(stack, photo, category="chair", where=["price!=5"]))}


def test_more_like_this_filters_too(stack: Services) -> None:
    found = results(httpx.get(f"{stack.gateway}/api/v1/items/{chair_id(2)}/similar",
                              params={"k": 10, "where": "in_stock=no"}))
    assert found and all(r["extra"]["in_stock"] == "no" for r in found)


def test_a_search_by_words_filters_too(stack: Services) -> None:
    response = httpx.get(f"{stack.gateway}/api/v1/search/text",
                         params={"q": "chair", "k": 10, "where": ["price<=400", "in_stock=yes"]})
    assert response.status_code == 200, response.text
    assert {r["id"] for r in response.json()["results"]} == {chair_id(0), chair_id(2)}
    refused = httpx.get(f"{stack.gateway}/api/v1/search/text", params={"q": "chair", "where": "colour=green"})
    assert error(refused)["code"] == "unknown_column"


@pytest.mark.parametrize("where, code", [("colour=green", "unknown_column"), ("price~300", "bad_filter"),
                                         ("price<=", "bad_filter"), ("=3", "bad_filter")])
def test_an_unknown_column_or_a_malformed_filter_is_a_422_listing_the_columns(stack: Services, catalog: Path,
                                                                              where: str, code: str) -> None:
    photo = photos_of(catalog, chair_id(0))[0].read_bytes()
    for response in (search(stack, photo, where=where),
                     httpx.get(f"{stack.gateway}/api/v1/items/{chair_id(0)}/similar", params={"where": where})):
        body = error(response)
        assert body["code"] == code and "in_stock, price" in body["message"]


def test_the_catalogue_lists_its_filterable_columns(stack: Services) -> None:
    columns = {c["name"]: c for c in httpx.get(stack.gateway + "/api/v1/catalog").json()["columns"]}
    assert set(columns) == {"price", "in_stock"}
    assert columns["price"]["kind"] == "number" and (columns["price"]["min"], columns["price"]["max"]) == (5, 700)
    assert columns["in_stock"]["kind"] == "text" and set(columns["in_stock"]["values"]) == {"yes", "no"}
    assert columns["price"]["products"] == CHAIRS - 1 + LAMPS


def test_the_page_is_offered_only_the_shopper_facing_columns_as_filters(stack: Services) -> None:
    """FILTER_COLUMNS (default price, availability, brand, color, material): `in_stock` is no filter on the
    page, though `where` takes it."""
    catalog = httpx.get(stack.gateway + "/api/v1/catalog").json()
    assert [c["name"] for c in catalog["filters"]] == ["price"]
    assert "in_stock" in {c["name"] for c in catalog["columns"]}
