"""Words by meaning beside bm25, end to end: the real all-MiniLM-L6-v2 (offline) in the indexing job and in a
real similarity service, behind a real gateway. The photo weights are `random`; the words' side is real."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from indexing.build import BuildPlan, build_index
from lookalike.catalog.text_embedding import TextEmbedder, packaged_model_dir
from tests.gateway.text_catalog import rows_of, text_catalog
from tests.support import Services


@pytest.fixture(scope="module")
def catalog(shared: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return text_catalog(shared, tmp_path_factory.mktemp("meaning-catalog"))


@pytest.fixture(scope="module")
def stack(catalog: Path, text_model: TextEmbedder, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    index = tmp_path_factory.mktemp("meaning-index")
    build_index(BuildPlan(catalog, index, "random", precision="fp32", text_model=text_model))
    with Services(index, tmp_path_factory.mktemp("meaning-logs")).running(
            env={"similarity": {"TEXT_MODEL": "auto"}}) as services:
        yield services


def text(stack: Services, q: str, **params: Any) -> httpx.Response:
    return httpx.get(f"{stack.gateway}/api/v1/search/text", params={"q": q, **params}, timeout=60)


def test_a_word_in_no_product_name_finds_its_category_through_meaning(stack: Services) -> None:
    response = text(stack, "chesterfield")
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert results[0]["category"] == "sofa"
    assert all(r["matched"] == ["meaning"] for r in results)  # bm25 alone found nothing


def test_an_exact_name_still_comes_first_found_by_both_sides(stack: Services) -> None:
    first = text(stack, "POÄNG armchair").json()["results"][0]
    assert first["name"] == "POÄNG armchair" and {"name", "meaning"} <= set(first["matched"])


def test_a_search_of_stop_words_alone_is_still_a_422(stack: Services) -> None:
    response = text(stack, "the with")
    assert response.status_code == 422 and response.json()["error"]["code"] == "bad_text_query"


def test_what_shoppers_taught_still_joins_the_ranking(stack: Services, catalog: Path) -> None:
    """Shoppers on three networks (the learnt prior's full weight) who refined `chesterfield` toward a lamp and
    liked it there put it above what the meaning side alone found (fused scores below 1 unless both sides agree)."""
    lamp = next(r for r in rows_of(catalog) if r["category"] == "lamp")
    for network in range(1, 4):
        transport = httpx.HTTPTransport(local_address=f"127.0.{network}.1")
        with httpx.Client(base_url=stack.gateway, transport=transport, timeout=60,
                          headers={"X-Session-ID": f"meaning-session-{network}"}) as shopper:
            refined = shopper.get("/api/v1/search/text", params={"q": "chesterfield", "like": lamp["id"], "k": 20})
            assert lamp["id"] in [r["id"] for r in refined.json()["results"]], refined.text
            vote = shopper.post("/api/v1/feedback", json={"query": "chesterfield", "item_id": lamp["id"], "vote": "like",
                                                          "query_id": refined.json()["query_id"]})
        assert vote.status_code == 201, vote.text
    first = text(stack, "chesterfield").json()["results"][0]
    assert first["id"] == lamp["id"] and first["learned"]


def test_a_photo_narrowed_by_an_absent_word_finds_products_by_meaning(stack: Services, catalog: Path) -> None:
    sofa = next(r for r in rows_of(catalog) if r["category"] == "sofa")
    response = httpx.post(f"{stack.gateway}/api/v1/search", params={"q": "chesterfield", "category": "sofa", "k": 3},
                          files={"image": ("sofa.jpg", (catalog / sofa["file"]).read_bytes(), "image/jpeg")}, timeout=60)
    assert response.status_code == 200, response.text
    assert len(response.json()["results"]) == 3


def test_the_similarity_service_says_which_text_model_it_serves(stack: Services, text_model: TextEmbedder) -> None:
    ready = httpx.get(f"{stack.url('similarity')}/readyz", timeout=30).json()
    assert ready["text_model"]["digest"] == text_model.info.digest


def test_a_service_set_to_another_text_model_refuses_the_version_and_says_why(stack: Services,
                                                                              tmp_path: Path) -> None:
    packaged = packaged_model_dir()
    assert packaged is not None
    other = tmp_path / "other-model"
    shutil.copytree(packaged, other)
    with open(other / "config.json", "a") as fh:
        fh.write("\n")  # the same network, but other files: another digest, as a retrained model would have
    stack.start("other-similarity", "similarity_service", {"TEXT_MODEL": str(other)})
    try:
        deadline = time.monotonic() + 240
        while True:
            try:
                answer = httpx.get(f"{stack.url('other-similarity')}/readyz", timeout=10)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the second similarity service never answered"
                time.sleep(1)
        assert answer.status_code == 503
        reason = answer.json()["reason"]
        assert "text vectors came from the text model sentence-transformers/all-MiniLM-L6-v2" in reason
        assert str(other) in reason and "Re-index with --text-model" in reason
    finally:
        stack.stop("other-similarity")
