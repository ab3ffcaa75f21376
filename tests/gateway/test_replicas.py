"""The gateway spreads uploads over classifier replicas, as `docker compose up --scale classifier=3` needs.

Real processes: two classifier replicas on two loopback ports, named to the gateway in one
comma-separated CLASSIFIER_URL, plus a third that has no index and so is not ready.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from tests.support import Services, free_port

SEARCHES = 8


@pytest.fixture(scope="module")
def replicated(built_index: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    stack = Services(built_index, tmp_path_factory.mktemp("replica-logs"))
    stack.ports = {name: free_port() for name in ("classifier", "classifier_b", "classifier_empty", "similarity", "gateway")}
    replicas = ",".join(stack.url(name) for name in ("classifier", "classifier_b", "classifier_empty"))
    stack.start("classifier")
    stack.start("classifier_b", "classifier_service", {"CLASSIFIER_PORT": str(stack.ports["classifier_b"])})
    stack.start("classifier_empty", "classifier_service", {"CLASSIFIER_PORT": str(stack.ports["classifier_empty"]),
                                                           "INDEX": str(tmp_path_factory.mktemp("no-index"))})
    stack.start("similarity")
    stack.start("gateway", env={"CLASSIFIER_URL": replicas})
    try:
        for name in ("classifier", "classifier_b", "gateway"):
            stack.wait_ready(name)
        stack.wait_ready("classifier_empty", path="/healthz")  # up, though it can never be ready
        yield stack
    finally:
        for name in list(stack.processes):
            stack.stop(name)


def classify_requests(stack: Services, name: str) -> int:
    """Uploads this replica has answered, from its own Prometheus counter."""
    metrics = httpx.get(stack.url(name) + "/metrics").text
    return int(sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                   if line.startswith("http_requests_total{") and 'route="/v1/classify"' in line))


def search(stack: Services, photo: bytes) -> httpx.Response:
    return httpx.post(f"{stack.gateway}/api/v1/search", params={"k": 3},
                      files={"image": ("photo.jpg", photo, "image/jpeg")}, timeout=60)


def test_uploads_are_spread_over_every_ready_classifier_replica(
        replicated: Services, query_photos: list[tuple[Path, str]]) -> None:
    before = {name: classify_requests(replicated, name) for name in ("classifier", "classifier_b")}
    for photo, _ in query_photos[:SEARCHES]:
        response = search(replicated, photo.read_bytes())
        assert response.status_code == 200, response.text
    served = {name: classify_requests(replicated, name) - before[name] for name in before}
    assert all(count > 0 for count in served.values()), served
    assert sum(served.values()) == SEARCHES


def test_a_replica_that_is_not_ready_passes_its_uploads_to_the_next(
        replicated: Services, query_photos: list[tuple[Path, str]]) -> None:
    assert httpx.get(replicated.url("classifier_empty") + "/readyz").status_code == 503
    for photo, _ in query_photos[:3]:
        assert search(replicated, photo.read_bytes()).status_code == 200


def test_the_gateway_is_ready_while_any_classifier_replica_is(replicated: Services) -> None:
    response = httpx.get(replicated.gateway + "/readyz")
    assert response.status_code == 200, response.text
    assert response.json()["classifier"]["ready"] is True


def test_searches_go_on_when_a_replica_stops(replicated: Services, query_photos: list[tuple[Path, str]]) -> None:
    replicated.stop("classifier_b")
    try:
        for photo, _ in query_photos[:4]:
            response = search(replicated, photo.read_bytes())
            assert response.status_code == 200, response.text
    finally:
        replicated.start("classifier_b", "classifier_service", {"CLASSIFIER_PORT": str(replicated.ports["classifier_b"])})
        replicated.wait_ready("classifier_b")


def wait_alive(url: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise TimeoutError(f"{url} did not come up in {timeout_s} s")


def test_when_no_replica_can_be_reached_the_upload_gets_a_503_that_says_so(
        built_index: Path, tmp_path: Path, query_photos: list[tuple[Path, str]]) -> None:
    stack = Services(built_index, tmp_path)
    stack.ports = {"classifier": free_port(), "similarity": free_port(), "gateway": free_port()}
    stack.start("gateway", env={"CLASSIFIER_URL": f"http://127.0.0.1:{free_port()},http://127.0.0.1:{free_port()}"})
    try:
        wait_alive(stack.gateway)
        response = search(stack, query_photos[0][0].read_bytes())
        assert response.status_code == 503
        assert "classifier" in response.json()["error"]["message"]
        assert response.headers["retry-after"] == "5"
    finally:
        stack.stop("gateway")
