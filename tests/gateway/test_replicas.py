"""The gateway spreads uploads over classifier replicas, as `docker compose up --scale classifier=3` needs.

Real processes: two classifier replicas on two loopback ports, named to the gateway in one
comma-separated CLASSIFIER_URL, plus a third that has no index and so is not ready.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import Replica, Services, free_port

SEARCHES = 8


@pytest.fixture(scope="module")
def replicated(built_index: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    stack = Services(built_index, tmp_path_factory.mktemp("replica-logs"))
    stack.ports = {name: free_port() for name in ("classifier", "classifier_b", "classifier_empty", "similarity", "gateway")}
    replicas = ",".join(stack.url(name) for name in ("classifier", "classifier_b", "classifier_empty"))
    with stack.running(replicas={"classifier_b": Replica("classifier_service"),
                                 "classifier_empty": Replica("classifier_service",
                                                             {"INDEX": str(tmp_path_factory.mktemp("no-index"))})},
                       env={"gateway": {"CLASSIFIER_URL": replicas}},
                       ready=("classifier", "classifier_b", "gateway"),
                       alive=("classifier_empty",)):  # up, though it can never be ready
        yield stack


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
    assert response.json()["ready"] is True


def test_searches_go_on_when_a_replica_stops(replicated: Services, query_photos: list[tuple[Path, str]]) -> None:
    replicated.stop("classifier_b")
    try:
        for photo, _ in query_photos[:4]:
            response = search(replicated, photo.read_bytes())
            assert response.status_code == 200, response.text
    finally:
        replicated.start("classifier_b", "classifier_service")
        replicated.wait_ready("classifier_b")


def test_when_no_replica_can_be_reached_the_upload_gets_a_503_that_says_so(
        built_index: Path, tmp_path: Path, query_photos: list[tuple[Path, str]]) -> None:
    nowhere = f"http://127.0.0.1:{free_port()},http://127.0.0.1:{free_port()}"
    with Services(built_index, tmp_path).running(["gateway"], env={"gateway": {"CLASSIFIER_URL": nowhere}},
                                                 ready=(), alive=("gateway",)) as stack:
        response = search(stack, query_photos[0][0].read_bytes())
        assert response.status_code == 503
        assert "classifier" in response.json()["error"]["message"]
        assert response.headers["retry-after"] == "5"
