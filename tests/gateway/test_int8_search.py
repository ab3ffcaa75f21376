"""A search served in int8, end to end: the classifier runs the serving index version's quantised model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import Services


@pytest.fixture(scope="module")
def int8_services(int8_index: Path, random_weights_file: Path,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    stack = Services(int8_index, tmp_path_factory.mktemp("int8-logs"),
                     extra_env={"WEIGHTS": str(random_weights_file), "PRECISION": "auto"})
    with stack.running() as running:
        yield running


def test_readiness_says_int8_is_served_and_gives_the_gates_figures(int8_services: Services) -> None:
    ready = httpx.get(f"{int8_services.url('classifier')}/readyz").json()
    assert ready["ready"] and ready["model"]["precision"] == "int8"
    assert ready["int8_gate"]["passed"] and ready["int8_gate"]["mean_cosine"] >= 0.98
    assert ready["warnings"] == []


def test_a_catalogue_photo_finds_itself_first_when_served_in_int8(int8_services: Services,
                                                                  small_catalog: Path) -> None:
    photo = small_catalog / "chair" / sorted(p.name for p in (small_catalog / "chair").iterdir())[0]
    response = httpx.post(f"{int8_services.gateway}/api/v1/search", params={"k": 3},
                          files={"image": (photo.name, photo.read_bytes(), "image/jpeg")}, timeout=60)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["category"] == "chair"  # the head, fitted on int8 embeddings, knows its own photo
    assert body["results"][0]["id"] == photo.stem
    assert body["results"][0]["score"] == pytest.approx(1.0, abs=1e-3)
