"""Faults on a stack of our own: services killed, hung, restarting, overloaded, re-indexed under load.

The gateway must answer 503 with a message naming the service, within its timeout, and
recover by itself when the service is back. These tests kill and pause real processes, so
they run their own stack and their own copy of the index, never the session's.
"""

from __future__ import annotations

import asyncio
import csv
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.indexing.test_incremental import extra_photos
from tests.support import INTERNAL_TOKEN, REPO, Services, write_csv

CLASSIFY_TIMEOUT_S = 8.0  # generous: this machine is shared, and re-indexing competes for its cores
SEARCH_TIMEOUT_S = 2.0
MAX_QUEUE = 4


@pytest.fixture(scope="module")
def stack(built_index: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    index = tmp_path_factory.mktemp("fault-index") / "index"
    shutil.copytree(built_index, index, symlinks=True)
    with Services(index, tmp_path_factory.mktemp("fault-logs"), extra_env={
            "GATEWAY_CLASSIFY_TIMEOUT_S": str(CLASSIFY_TIMEOUT_S), "GATEWAY_SEARCH_TIMEOUT_S": str(SEARCH_TIMEOUT_S),
            "CLASSIFIER_MAX_QUEUE": str(MAX_QUEUE), "CLASSIFIER_MAX_BATCH": "2"}).running() as services:
        yield services


@pytest.fixture
def ready(stack: Services) -> Iterator[Services]:
    """Each test starts with all three up and ready, and leaves them so."""
    for name in Services.modules:
        if name not in stack.processes:
            stack.start(name)
    stack.wait_ready()
    yield stack
    for name in Services.modules:
        if name in stack.processes:
            stack.resume(name)


@pytest.fixture(scope="module")
def photo(small_catalog: Path) -> bytes:
    return next((small_catalog / "chair").iterdir()).read_bytes()


def search(stack: Services, photo: bytes, **params: object) -> httpx.Response:
    return httpx.post(f"{stack.gateway}/api/v1/search", params=params, files={"image": ("p.jpg", photo)}, timeout=60)


def assert_unavailable(response: httpx.Response, service: str) -> None:
    assert response.status_code == 503, response.text
    assert response.headers.get("retry-after")
    error = response.json()["error"]
    assert service in error["message"], error


def wait_until_searching(stack: Services, photo: bytes, timeout_s: float = 120) -> None:
    """The gateway recovers without a restart: poll until a search succeeds again."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if search(stack, photo).status_code == 200:
            return
        time.sleep(0.5)
    raise AssertionError(f"no successful search within {timeout_s} s of the service returning")


@pytest.mark.parametrize("service", ["classifier", "similarity"])
def test_a_crashed_service_is_a_503_naming_it_and_the_gateway_recovers_when_it_returns(
        ready: Services, photo: bytes, service: str) -> None:
    gateway_pid = ready.pid("gateway")
    ready.kill(service)
    assert_unavailable(search(ready, photo), service)
    readiness = httpx.get(ready.gateway + "/readyz", timeout=30)
    assert readiness.status_code == 503 and service in readiness.json()["reason"]

    ready.start(service)
    ready.wait_ready()
    wait_until_searching(ready, photo)
    assert ready.pid("gateway") == gateway_pid


@pytest.mark.parametrize("service, timeout_s", [("classifier", CLASSIFY_TIMEOUT_S), ("similarity", SEARCH_TIMEOUT_S)])
def test_a_hung_service_times_out_into_a_503_and_recovers(ready: Services, photo: bytes,
                                                          service: str, timeout_s: float) -> None:
    ready.pause(service)
    try:
        started = time.monotonic()
        response = search(ready, photo)
        waited = time.monotonic() - started
        assert_unavailable(response, service)
        assert "in time" in response.json()["error"]["message"]
        assert waited < timeout_s + 10, "the gateway answers within its timeout, it does not hang with the service"
    finally:
        ready.resume(service)
    wait_until_searching(ready, photo)


def test_a_restarting_classifier_costs_503s_never_500s_or_dropped_connections(ready: Services, photo: bytes) -> None:
    statuses: list[int] = []
    ready.stop("classifier")
    ready.start("classifier")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        response = search(ready, photo)  # a transport error here would fail the test: the gateway must answer
        statuses.append(response.status_code)
        if response.status_code == 200:
            break
        assert_unavailable(response, "classifier")
        time.sleep(0.2)
    assert statuses[-1] == 200 and set(statuses) <= {200, 503}


@pytest.mark.anyio
async def test_past_the_queue_limit_the_classifier_answers_503_with_retry_after(ready: Services, photo: bytes) -> None:
    async with httpx.AsyncClient(timeout=60) as client:
        async def one() -> httpx.Response:
            return await client.post(f"{ready.gateway}/api/v1/search", files={"image": ("p.jpg", photo)})

        responses = await asyncio.gather(*(one() for _ in range(6 * MAX_QUEUE)))
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 503}, statuses
    refused = [r for r in responses if r.status_code == 503]
    assert refused, "a burst of 6x the queue limit must be refused in part, not queued whole"
    assert all(r.json()["error"]["code"] == "overloaded" and r.headers["retry-after"] for r in refused)
    assert 200 in statuses


def changed_catalog(small_catalog: Path, root: Path, dropped: Path) -> Path:
    """A copy of the catalogue with one item taken out, and two new lamps with price and url columns.

    The next version must not return the dropped item, and must return the new ones with their columns.
    """
    shutil.copytree(small_catalog, root)
    (root / dropped.relative_to(small_catalog)).unlink()
    with open(small_catalog / "products.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if Path(r["file"]).stem != dropped.stem]
    for n, photo in enumerate(extra_photos("lamp", 2)):
        shutil.copy(photo, root / "lamp" / photo.name)
        rows.append({"id": f"new-lamp-{n}", "category": "lamp", "name": f"New lamp {n}", "file": f"lamp/{photo.name}",
                     "price": f"{49 + n}.00", "url": f"https://shop.example/new-lamp-{n}"})
    write_csv(root / "products.csv", rows, [*rows[0], "price", "url"])
    return root


@pytest.mark.anyio
async def test_searches_keep_succeeding_while_the_index_is_rebuilt_and_switch_atomically(
        ready: Services, small_catalog: Path, tmp_path: Path) -> None:
    dropped = sorted((small_catalog / "lamp").iterdir())[0]
    catalog = changed_catalog(small_catalog, tmp_path / "catalog", dropped)
    old_version = httpx.get(ready.url("similarity") + "/readyz").json()["index_version"]
    query = dropped.read_bytes()
    answers: list[tuple[int, str | None, list[str]]] = []
    rebuilt = asyncio.Event()

    async def keep_searching(client: httpx.AsyncClient) -> None:
        after_rebuild = 0
        while after_rebuild < 3:
            after_rebuild += rebuilt.is_set()
            response = await client.post(f"{ready.gateway}/api/v1/search", params={"category": "lamp", "k": 3},
                                         files={"image": ("lamp.jpg", query)})
            body = response.json() if response.status_code == 200 else {}
            answers.append((response.status_code, body.get("index_version"), [r["id"] for r in body.get("results", [])]))

    async with httpx.AsyncClient(timeout=60) as client:
        searchers = [asyncio.create_task(keep_searching(client)) for _ in range(2)]
        job = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "indexing", "--catalog", str(catalog), "--index", str(ready.index),
            "--weights", "random", "--precision", "fp32", "--notify", ready.url("classifier"), ready.url("similarity"),
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            env={**os.environ, "LOOKALIKE_INTERNAL_TOKEN": INTERNAL_TOKEN.get_secret_value()})  # reloads need it
        output, _ = await job.communicate()
        assert job.returncode == 0, output.decode()
        summary = output.decode()
        rebuilt.set()
        await asyncio.gather(*searchers)

    new_version = httpx.get(ready.url("similarity") + "/readyz").json()["index_version"]
    assert new_version != old_version
    assert "embedded 2, reused" in summary and "removed 1" in summary, summary  # only the new photos embedded
    assert f"now serving {new_version}" in summary
    assert [a for a in answers if a[0] != 200] == [], "no search may fail while the index is rebuilt"
    assert {version for _, version, _ in answers} <= {old_version, new_version}
    for _, version, ids in answers:  # every answer comes whole from one version
        if version == old_version:
            assert ids[0] == dropped.stem
        else:
            assert dropped.stem not in ids
    assert all(version == new_version for _, version, _ in answers[-3:])

    lamps = httpx.post(f"{ready.gateway}/api/v1/search", params={"category": "lamp", "k": 100},
                       files={"image": ("lamp.jpg", query)}, timeout=60).json()["results"]
    assert {r["id"]: r["extra"] for r in lamps if r["id"].startswith("new-lamp-")} == {
        "new-lamp-0": {"price": "49.00", "url": "https://shop.example/new-lamp-0"},
        "new-lamp-1": {"price": "50.00", "url": "https://shop.example/new-lamp-1"}}
