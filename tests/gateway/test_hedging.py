"""Hedging: an unsure classification also searches the runner-up category, merged by score.

A second gateway with GATEWAY_HEDGE_BELOW=1 (hedge whenever the top probability is below 1)
runs beside the suite's own, in front of the same classifier and similarity processes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import Services, free_port


@pytest.fixture(scope="module")
def hedging_gateway(services: Services, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    stack = Services(services.index, tmp_path_factory.mktemp("hedging-logs"),
                     ports={**services.ports, "gateway": free_port()}, extra_env={"GATEWAY_HEDGE_BELOW": "1"})
    with stack.running(["gateway"]):  # a second gateway on the same two services
        yield stack.gateway


def search(gateway: str, photo: Path, **params: object) -> dict:
    response = httpx.post(f"{gateway}/api/v1/search", params=params,
                          files={"image": (photo.name, photo.read_bytes(), "image/jpeg")}, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def unsure_photo(gateway: str, query_photos: list[tuple[Path, str]]) -> tuple[Path, dict]:
    for photo, _ in query_photos[:20]:
        body = search(gateway, photo, k=10)
        if body["confidence"] < 1:
            return photo, body
    pytest.fail("no query photo with a top probability below 1 among the first 20")


def test_an_unsure_search_covers_the_top_two_categories_merged_by_score(
        hedging_gateway: str, query_photos: list[tuple[Path, str]]) -> None:
    _, body = unsure_photo(hedging_gateway, query_photos)
    ranked = sorted(body["probabilities"], key=body["probabilities"].get, reverse=True)
    assert body["category"] == ranked[0]  # the answer's category stays the decision
    assert body["searched"] == ranked[:2]
    results = body["results"]
    assert len(results) == 10  # 6 items per category in the test catalogue: both categories contribute
    assert {r["category"] for r in results} == set(ranked[:2])
    assert [r["score"] for r in results] == sorted((r["score"] for r in results), reverse=True)


def test_a_requested_category_is_searched_alone_even_when_unsure(
        hedging_gateway: str, query_photos: list[tuple[Path, str]]) -> None:
    photo, _ = unsure_photo(hedging_gateway, query_photos)
    body = search(hedging_gateway, photo, k=10, category="lamp")
    assert body["searched"] == ["lamp"] and {r["category"] for r in body["results"]} == {"lamp"}


def test_hedging_is_off_by_default(services: Services, query_photos: list[tuple[Path, str]]) -> None:
    body = search(services.gateway, query_photos[0][0], k=10)
    assert body["searched"] == [body["category"]]
    assert {r["category"] for r in body["results"]} == {body["category"]}
