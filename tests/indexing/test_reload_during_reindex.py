"""No downtime: shoppers keep searching while the job re-indexes and tells the services to reload.

A stack of its own (three real processes) on its own copy of the index; a thread searches
through the gateway without pause while `python -m indexing --notify ...` runs as a real process.
Not one search may fail, and the answers must move from the old version to the new one.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from lookalike.index_layout import IndexLayout
from tests.indexing.test_incremental import extra_photos
from tests.support import REPO, Services, free_port, write_csv


@pytest.fixture
def stack(built_index: Path, tmp_path: Path) -> Iterator[Services]:
    index = tmp_path / "index"
    shutil.copytree(built_index, index, symlinks=True)
    services = Services(index, tmp_path)
    services.ports = {name: free_port() for name in Services.modules}
    try:
        for name in ("classifier", "similarity", "gateway"):
            services.start(name)
        services.wait_ready(timeout_s=300)
        yield services
    finally:
        for name in list(services.processes):
            services.stop(name)


def add_priced_products(catalog: Path) -> list[str]:
    """Two new lamps with price and url columns in products.csv; their ids."""
    with open(catalog / "products.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    fields = [*rows[0], "price", "url"]
    ids = []
    for n, photo in enumerate(extra_photos("lamp", 2)):
        shutil.copy(photo, catalog / "lamp" / photo.name)
        ids.append(f"new-lamp-{n}")
        rows.append({"id": ids[-1], "category": "lamp", "name": f"New lamp {n}", "file": f"lamp/{photo.name}",
                     "price": f"{49 + n}.00", "url": f"https://shop.example/new-lamp-{n}"})
    write_csv(catalog / "products.csv", rows, fields)
    return ids


def test_searches_never_fail_while_the_index_is_rebuilt_and_reloaded(
        stack: Services, small_catalog: Path, query_photos: list[tuple[Path, str]], tmp_path: Path) -> None:
    catalog = tmp_path / "catalog"
    shutil.copytree(small_catalog, catalog)
    new_ids = add_priced_products(catalog)
    old_version = IndexLayout(stack.index).current().name
    photo = query_photos[0][0].read_bytes()
    answers: list[tuple[int, str | None]] = []
    stop = threading.Event()

    def search_without_pause() -> None:
        with httpx.Client(base_url=stack.gateway, timeout=120) as client:
            while not stop.is_set():
                response = client.post("/api/v1/search", files={"image": ("q.jpg", photo, "image/jpeg")})
                version = response.json().get("index_version") if response.status_code == 200 else response.text
                answers.append((response.status_code, version))

    searcher = threading.Thread(target=search_without_pause)
    searcher.start()
    try:
        job = subprocess.run(
            [sys.executable, "-m", "indexing", "--catalog", str(catalog), "--index", str(stack.index),
             "--weights", "random", "--precision", "fp32", "--notify", stack.url("classifier"),
             stack.url("similarity")],
            cwd=REPO, capture_output=True, text=True, timeout=600)
        new_version = IndexLayout(stack.index).current().name
        seen_after = len(answers)
        while len(answers) < seen_after + 3 and searcher.is_alive():
            threading.Event().wait(0.1)  # a few searches after the reload, on the new version
    finally:
        stop.set()
        searcher.join(timeout=180)

    assert job.returncode == 0, job.stderr
    assert "embedded 2, reused 30, removed 0" in job.stdout
    assert f"now serving {new_version}" in job.stdout
    assert new_version != old_version
    failures = [a for a in answers if a[0] != 200]
    assert not failures, failures
    versions = [v for _, v in answers]
    assert versions[0] == old_version and versions[-1] == new_version
    assert set(versions) == {old_version, new_version}

    lamps = httpx.post(stack.gateway + "/api/v1/search", params={"category": "lamp", "k": 100},
                       files={"image": ("q.jpg", photo, "image/jpeg")}, timeout=120).json()["results"]
    priced = {r["id"]: r["extra"] for r in lamps if r["id"] in new_ids}
    assert priced == {"new-lamp-0": {"price": "49.00", "url": "https://shop.example/new-lamp-0"},
                      "new-lamp-1": {"price": "50.00", "url": "https://shop.example/new-lamp-1"}}
