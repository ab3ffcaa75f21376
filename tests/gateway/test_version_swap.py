"""Re-indexing under load, as real processes on loopback: the job reloads the classifier, then the similarity
service; shoppers searching meanwhile (hedged, two categories a search) see neither a 422 for the category the
new version adds nor results of two versions in one answer."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from indexing.build import BuildPlan, build_index
from indexing.cache import CACHE_FILE
from indexing.notify import notify_reload
from lookalike.catalog.layout import IndexLayout, read_items
from tests.support import INTERNAL_TOKEN, Services, demo_rows, write_catalog

SHOPPERS = 3
MAX_SEARCHES = 150  # in all: a bound, whatever happens
SKEWED_AT_MOST_S = 15.0  # how long the services stay on different versions at most; the gateway waits up to 60 s


@pytest.fixture(scope="module")
def catalogs(shared: Path, small_catalog: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """v1's catalogue has no lamps; v2's is the small catalogue, lamps included."""
    rows = [row for row in demo_rows(shared) if (small_catalog / row["file"]).is_file()]
    without_lamps = write_catalog(shared, tmp_path_factory.mktemp("no-lamps"),
                                  [row for row in rows if row["category"] != "lamp"], list(rows[0]))
    return without_lamps, small_catalog


@pytest.fixture(scope="module")
def stack(catalogs: tuple[Path, Path], built_index: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    index = tmp_path_factory.mktemp("swap-index")
    shutil.copy(built_index / CACHE_FILE, index / CACHE_FILE)  # the photos' embeddings: nothing to embed again
    build_index(BuildPlan(catalogs[0], index, "random", precision="fp32"))
    env = {"GATEWAY_HEDGE_BELOW": "1", "GATEWAY_VERSION_WAIT_S": "60"}
    with Services(index, tmp_path_factory.mktemp("logs"), extra_env=env).running() as services:
        yield services


def skews_answered(stack: Services) -> float:
    """The similarity service's 409 answers to searches, from its /metrics."""
    metrics = httpx.get(f"{stack.url('similarity')}/metrics", timeout=30).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
               if line.startswith("http_requests_total{") and 'status="409"' in line and "/v1/search" in line)


def categories_of(version_dir: Path) -> set[str]:
    return {item.category for item in read_items(version_dir)}


def test_a_version_swap_under_load_shows_no_shopper_a_422_or_mixed_results(
        stack: Services, catalogs: tuple[Path, Path]) -> None:
    photos = [path.read_bytes() for category in ("lamp", "chair") for path in sorted((catalogs[1] / category).glob("*.jpg"))]
    answers: list[tuple[int, dict[str, Any]]] = []
    started = [0]
    stop = threading.Event()
    lock = threading.Lock()

    def shop(offset: int) -> None:
        with httpx.Client(timeout=60) as client:
            n = offset
            while not stop.is_set():
                with lock:
                    if started[0] >= MAX_SEARCHES:
                        return
                    started[0] += 1
                photo = photos[n % len(photos)]
                n += 1
                response = client.post(f"{stack.gateway}/api/v1/search", files={"image": ("p.jpg", photo, "image/jpeg")})
                with lock:
                    answers.append((response.status_code, response.json()))

    shoppers = [threading.Thread(target=shop, args=(i,)) for i in range(SHOPPERS)]
    for shopper in shoppers:
        shopper.start()
    try:
        v2 = build_index(BuildPlan(catalogs[1], stack.index, "random", precision="fp32"))
        [classifier] = notify_reload([stack.url("classifier")], INTERNAL_TOKEN)
        assert "now serving" in classifier
        with lock:
            at_reload = started[0]
        # Searches start while the two services hold different versions: one a shopper, or a while at most
        # (a search between versions waits for them to agree, so a shopper may start no second one).
        deadline = time.monotonic() + SKEWED_AT_MOST_S
        while started[0] < min(at_reload + SHOPPERS, MAX_SEARCHES) and time.monotonic() < deadline:
            time.sleep(0.05)
        [similarity] = notify_reload([stack.url("similarity")], INTERNAL_TOKEN)
        assert "now serving" in similarity
        with lock:
            at_agreement = len(answers)
        deadline = time.monotonic() + 120
        while len(answers) < min(at_agreement + SHOPPERS, MAX_SEARCHES) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        for shopper in shoppers:
            shopper.join(timeout=120)
    statuses = sorted({status for status, _ in answers})
    assert statuses == [200], [body for status, body in answers if status != 200][:3]
    layout = IndexLayout(stack.index)
    versions = {name: categories_of(layout.versions / name) for name in layout.published()}
    seen = {body["index_version"] for _, body in answers}
    assert v2.version in seen
    assert skews_answered(stack) > 0, "some searches did start between the two reloads"
    for _, body in answers:
        catalogue = versions[body["index_version"]]
        assert set(body["searched"]) <= catalogue and {r["category"] for r in body["results"]} <= catalogue
