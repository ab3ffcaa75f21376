"""The public API, end to end: three real processes on loopback, real photos, real Faiss, real HTTP."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.support import Services

pytestmark = pytest.mark.usefixtures("services")


def search(services: Services, photo: bytes, filename: str = "photo.jpg", **params: object) -> httpx.Response:
    return httpx.post(f"{services.gateway}/api/v1/search", params=params,
                      files={"image": (filename, photo, "image/jpeg")}, timeout=60)


def assert_error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    return body["error"]["message"]


def test_a_query_photo_gets_a_category_and_similar_items(services: Services,
                                                          query_photos: list[tuple[Path, str]]) -> None:
    photo, _ = query_photos[0]
    response = search(services, photo.read_bytes(), k=3)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["category"] in body["probabilities"]
    assert sorted(body["probabilities"]) == ["bed", "chair", "lamp", "sofa", "table"]
    assert sum(body["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    assert body["confidence"] == pytest.approx(body["probabilities"][body["category"]])
    assert body["weights"] == "random"
    assert set(body["timings_ms"]) == {"classify", "search", "total"}
    results = body["results"]
    assert len(results) == 3  # products: six photos a category, some of them variants of one group
    assert all(r["category"] == body["category"] for r in results)
    assert [r["score"] for r in results] == sorted((r["score"] for r in results), reverse=True)
    assert {"id", "name", "category", "score", "image_url"} <= set(results[0])


def test_a_catalogue_image_finds_itself_first(services: Services, small_catalog: Path) -> None:
    photo = small_catalog / "lamp" / sorted(p.name for p in (small_catalog / "lamp").iterdir())[0]
    expected_id = photo.stem  # products.csv ids are the file stems in the demo catalogue
    body = search(services, photo.read_bytes(), category="lamp", k=3).json()
    assert body["results"][0]["id"] == expected_id
    assert body["results"][0]["score"] == pytest.approx(1.0, abs=1e-3)


def test_the_category_parameter_overrides_the_classifier(services: Services, small_catalog: Path) -> None:
    photo = next((small_catalog / "bed").iterdir()).read_bytes()
    body = search(services, photo, category="sofa").json()
    assert body["category"] == "sofa" and {r["category"] for r in body["results"]} == {"sofa"}


def test_result_images_are_served_by_id(services: Services, small_catalog: Path) -> None:
    photo = next((small_catalog / "chair").iterdir()).read_bytes()
    url = search(services, photo, k=1).json()["results"][0]["image_url"]
    image = httpx.get(services.gateway + url)
    assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
    assert image.content[:2] == b"\xff\xd8"


@pytest.mark.parametrize("item_id", ["../../etc/passwd", "..%2F..%2Fetc%2Fpasswd", "nope"])
def test_only_catalogue_items_are_served(services: Services, item_id: str) -> None:
    response = httpx.get(f"{services.gateway}/api/v1/items/{item_id}/image")
    assert response.status_code == 404
    assert "etc" not in response.text and "/" not in response.json()["error"]["message"]


def test_more_like_this_searches_by_a_catalogue_item(services: Services, small_catalog: Path) -> None:
    item_id = sorted(p.stem for p in (small_catalog / "sofa").iterdir())[0]
    body = httpx.get(f"{services.gateway}/api/v1/items/{item_id}/similar", params={"k": 3}).json()
    assert body["category"] == "sofa" and len(body["results"]) == 3
    assert item_id not in {r["id"] for r in body["results"]}


def test_a_text_file_is_a_clear_4xx_not_a_500(services: Services) -> None:
    message = assert_error(search(services, b"just some text", filename="notes.jpg"), 415)
    assert "not an image" in message


@pytest.mark.parametrize("params, status", [({"k": 0}, 422), ({"k": 101}, 422), ({"category": "wardrobe"}, 422)])
def test_bad_parameters_are_4xx_with_a_message(services: Services, small_catalog: Path,
                                                params: dict[str, object], status: int) -> None:
    photo = next((small_catalog / "chair").iterdir()).read_bytes()
    assert_error(search(services, photo, **params), status)


def test_a_missing_image_field_or_a_non_multipart_body_is_explained(services: Services) -> None:
    url = f"{services.gateway}/api/v1/search"
    assert "image" in assert_error(httpx.post(url, files={"photo": ("a.jpg", b"x")}), 400)
    assert "multipart" in assert_error(httpx.post(url, content=b"x", headers={"content-type": "image/jpeg"}), 415)


def test_health_readiness_and_docs(services: Services) -> None:
    for name in ("gateway", "classifier", "similarity"):
        assert httpx.get(services.url(name) + "/healthz").json() == {"status": "ok"}
        assert httpx.get(services.url(name) + "/docs").status_code == 200
    ready = httpx.get(services.gateway + "/readyz").json()
    assert ready == {"ready": True, "reason": None, "weights": "random"}  # the services' details: on their own ports
    classifier, similarity = (httpx.get(services.url(name) + "/readyz").json() for name in ("classifier", "similarity"))
    assert classifier["model"]["model_id"] == similarity["model_id"]


def test_the_page_is_served(services: Services) -> None:
    page = httpx.get(services.gateway + "/")
    assert page.status_code == 200 and "<form" in page.text


def test_catalog_info_names_categories_and_weights(services: Services) -> None:
    info = httpx.get(services.gateway + "/api/v1/catalog").json()
    assert info["categories"] == {c: 6 for c in ["bed", "chair", "lamp", "sofa", "table"]}
    assert info["weights"] == "random"
    assert info["state"] == "ready" and info["reason"] is None
    assert info["max_upload_bytes"] == 20_000_000


def test_every_kind_of_search_answers_with_a_query_id(services: Services, small_catalog: Path) -> None:
    """Photo, photo with words, steered, words and more-like-this: each a receipt votes and events can name."""
    photo = next((small_catalog / "lamp").iterdir()).read_bytes()
    session = {"X-Session-ID": "receipts-session-1"}
    by_photo = httpx.post(f"{services.gateway}/api/v1/search", params={"k": 3}, headers=session,
                          files={"image": ("p.jpg", photo, "image/jpeg")}, timeout=60).json()
    answers = {
        "photo": by_photo,
        "photo_words": search(services, photo, q="lamp", k=3).json(),
        "steered": httpx.post(f"{services.gateway}/api/v1/search", params={"photo": by_photo["photo"],
                              "category": "sofa"}, headers=session, timeout=60).json(),
        "words": httpx.get(f"{services.gateway}/api/v1/search/text", params={"q": "sofa"}, headers=session).json(),
        "similar": httpx.get(f"{services.gateway}/api/v1/items/{by_photo['results'][0]['id']}/similar").json(),
    }
    ids = {kind: answer["query_id"] for kind, answer in answers.items()}
    assert all(len(query_id) > 40 for query_id in ids.values()), ids
    assert len(set(ids.values())) == len(ids)
