"""The real image and the real compose.yaml, run by a real Docker engine: what a store does first.

Run by `make test-deploy` (tools/test_deploy.sh), which starts the engine and builds the image; not
part of `make test`, so this file's name does not start with `test_`. The tests run in order, on one
stack, and each says one thing the stack does:
index a small real catalogue, come up with three classifier replicas, answer searches through the
published port from all three, survive one replica's crash, re-index while serving, and go away.

What differs from compose.yaml, and only here (an override file merged on top, written below):
the image is the one just built, the weights are `random` (no weights can be downloaded here), the
classifier's batches are at most 2 (a shorter warm-up), the catalogue is a small real one, and the
published port is a free one.
"""

from __future__ import annotations

import csv
import json
import os
import secrets
import shutil
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.support import REPO, free_port

PROJECT = "lookalike-test-deploy"
REPLICAS = 3
SERVING = ["classifier", "similarity", "gateway"]
SEARCH_TIMEOUT_S = 30  # a search that takes longer counts as a hang
UP_TIMEOUT_S = 600  # compose.yaml's start_period (300 s) is the real limit

pytestmark = pytest.mark.skipif("LOOKALIKE_DEPLOY_IMAGE" not in os.environ,
                                reason="run by `make test-deploy`, which starts Docker and builds the image")


def run(*argv: str, timeout_s: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=timeout_s)
    if check:
        assert result.returncode == 0, f"{' '.join(argv)}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def docker_state() -> dict[str, list[str]]:
    """Every container, volume and network the engine has: what must be the same after the test."""
    return {kind: sorted(run("docker", *command, "-q").stdout.split())
            for kind, command in {"containers": ["ps", "-a"], "volumes": ["volume", "ls"],
                                  "networks": ["network", "ls"]}.items()}


def override(image: str, index_image: str, catalog: Path, compose: dict[str, Any]) -> dict[str, Any]:
    """compose.yaml's test-only differences: these images (the serving one, and the indexer's), random weights,
    a small catalogue."""
    services: dict[str, Any] = {name: {"image": index_image if name == "indexer" else image}
                                for name in compose["services"]}
    # Batches of at most 2: three classifier replicas share two cores here (often with other jobs).
    services["classifier"]["environment"] = {"WEIGHTS": "random", "CLASSIFIER_MAX_BATCH": "2"}
    # The tests search back to back from one address, the host: one client to the gateway's fair shares.
    services["gateway"]["environment"] = {"GATEWAY_SEARCHES_PER_MINUTE": "0"}
    indexer = compose["services"]["indexer"]
    services["indexer"]["command"] = ["random" if arg == "imagenet" else arg for arg in indexer["command"]]
    services["indexer"]["volumes"] = [{**mount, "source": str(catalog)}
                                      for mount in indexer["volumes"] if mount["type"] == "bind"]
    return {"services": services}


@dataclass
class Stack:
    """One compose project on the engine, driven through `docker compose` as a store would."""

    files: list[Path]
    port: int
    out: Path
    timings: dict[str, float] = field(default_factory=dict)
    before: dict[str, list[str]] = field(default_factory=dict)

    def compose(self, *args: str, timeout_s: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
        files = [arg for path in self.files for arg in ("-f", str(path))]
        return run("docker", "compose", "-p", PROJECT, *files, *args, timeout_s=timeout_s, check=check)

    def timed(self, step: str, *args: str, timeout_s: float = 600) -> subprocess.CompletedProcess[str]:
        started = time.monotonic()
        result = self.compose(*args, timeout_s=timeout_s)
        self.timings[step] = time.monotonic() - started
        self.note(step, f"{self.timings[step]:5.0f} s")
        return result

    def note(self, step: str, text: str) -> None:
        with open(self.out / "timings.txt", "a") as fh:
            fh.write(f"  {step:<26} {text}\n")

    def containers(self, service: str) -> list[str]:
        return sorted(self.compose("ps", "-a", "-q", service).stdout.split())

    def inspect(self, container: str) -> dict[str, Any]:
        inspected: list[dict[str, Any]] = json.loads(run("docker", "inspect", container).stdout)
        return inspected[0]

    def url(self, container: str) -> str:
        """A replica's own address on compose's network (the host has the network's gateway address)."""
        networks = self.inspect(container)["NetworkSettings"]["Networks"]
        return f"http://{next(iter(networks.values()))['IPAddress']}:8000"

    def health(self, container: str) -> str:
        state = self.inspect(container)["State"]
        return str(state["Health"]["Status"]) if "Health" in state else str(state["Status"])

    def classified(self, container: str) -> float:
        """Uploads this replica has classified since its process started: its own /metrics."""
        text = httpx.get(self.url(container) + "/metrics", timeout=10).text
        return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
                   if sample.name == "http_requests_total" and sample.labels.get("route") == "/v1/classify"
                   and sample.labels.get("status", "").startswith("2"))

    def search(self, photo: Path, category: str | None = None) -> httpx.Response:
        params: dict[str, str | int] = {"k": 3, **({"category": category} if category else {})}
        return httpx.post(f"http://127.0.0.1:{self.port}/api/v1/search", params=params, timeout=SEARCH_TIMEOUT_S,
                          files={"image": (photo.name, photo.read_bytes(), "image/jpeg")})


class Searching:
    """Searches sent one after another from a thread while something happens to the stack."""

    def __init__(self, stack: Stack, photos: list[Path]) -> None:
        self.stack, self.photos = stack, photos
        self.statuses: Counter[int | str] = Counter()
        self.versions: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        sent = 0
        while not self._stop.is_set():
            try:
                response = self.stack.search(self.photos[sent % len(self.photos)])
                self.statuses[response.status_code] += 1
                if response.status_code == 200:
                    self.versions.append(response.json()["index_version"])
            except httpx.HTTPError as exc:
                self.statuses[type(exc).__name__] += 1  # a timeout here is a hang
            sent += 1

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=SEARCH_TIMEOUT_S + 5)


def wait_for(what: str, condition: Any, timeout_s: float, stack: Stack) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(1)
    logs = stack.compose("logs", "--no-color", "--tail", "40", check=False).stdout
    pytest.fail(f"not within {timeout_s:.0f} s: {what}\n{logs[-6000:]}")


@pytest.fixture(scope="module")
def photos(query_photos: list[tuple[Path, str]]) -> list[Path]:
    return [photo for photo, _ in query_photos[:24]]


@pytest.fixture(scope="module")
def stack(small_catalog: Path) -> Iterator[Stack]:
    out = REPO / os.environ.get("LOOKALIKE_DEPLOY_OUT", "test-output/deploy")
    out.mkdir(parents=True, exist_ok=True)
    # The catalogue is bind-mounted into a container that runs as an unprivileged user: it must be
    # readable by everyone, as a store's ./reference_images must be.
    catalog = out / "catalog"
    shutil.rmtree(catalog, ignore_errors=True)
    shutil.copytree(small_catalog, catalog)
    for path in [catalog, *catalog.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    compose = yaml.safe_load((REPO / "compose.yaml").read_text())
    test_file = out / "compose.test.yaml"
    test_file.write_text(yaml.safe_dump(override(os.environ["LOOKALIKE_DEPLOY_IMAGE"],
                                                 os.environ["LOOKALIKE_DEPLOY_INDEX_IMAGE"], catalog, compose)))
    port = free_port()
    os.environ["LOOKALIKE_PORT"] = str(port)  # compose.yaml publishes the gateway on it
    os.environ.setdefault("LOOKALIKE_INTERNAL_TOKEN", secrets.token_urlsafe(32))  # compose.yaml insists on one
    stack = Stack([REPO / "compose.yaml", test_file], port, out)
    stack.compose("down", "--volumes", "--remove-orphans", check=False)  # what a killed earlier run left
    stack.before = docker_state()
    try:
        yield stack
    finally:
        (out / "compose.log").write_text(stack.compose("logs", "--no-color", check=False, timeout_s=60).stdout)
        stack.compose("down", "--volumes", "--remove-orphans", check=False)


def test_the_indexer_indexes_a_small_real_catalogue(stack: Stack) -> None:
    result = stack.timed("index", "run", "--rm", "indexer")
    assert "Published version" in result.stdout, result.stdout + result.stderr


def test_up_with_three_classifiers_and_every_container_turns_healthy(stack: Stack) -> None:
    stack.timed("up-healthy", "up", "-d", "--scale", f"classifier={REPLICAS}", "--wait",
                "--wait-timeout", str(UP_TIMEOUT_S), timeout_s=UP_TIMEOUT_S + 60)
    assert len(stack.containers("classifier")) == REPLICAS
    for service in SERVING:
        for container in stack.containers(service):
            assert stack.health(container) == "healthy", (service, container)


def test_searches_through_the_published_port_reach_all_three_replicas(stack: Stack, photos: list[Path]) -> None:
    for photo in photos[:4 * REPLICAS]:
        response = stack.search(photo)
        assert response.status_code == 200, response.text
        assert response.json()["weights"] == "random" and len(response.json()["results"]) == 3
    served = {container: stack.classified(container) for container in stack.containers("classifier")}
    assert all(count > 0 for count in served.values()), served


def test_a_catalogue_photo_finds_itself_first(stack: Stack, small_catalog: Path) -> None:
    with open(small_catalog / "products.csv", newline="") as fh:
        product = next(csv.DictReader(fh))
    response = stack.search(small_catalog / product["file"], category=product["category"])
    assert response.status_code == 200, response.text
    assert response.json()["results"][0]["id"] == product["id"]


def test_a_replica_killed_from_the_host_comes_back_and_searches_go_on(stack: Stack, photos: list[Path]) -> None:
    victim = stack.containers("classifier")[0]
    before = stack.inspect(victim)["RestartCount"]
    with Searching(stack, photos) as searching:
        time.sleep(2)
        os.kill(stack.inspect(victim)["State"]["Pid"], signal.SIGKILL)  # a crash, not a `docker stop`
        started = time.monotonic()
        wait_for("the killed replica is restarted and healthy again",
                 lambda: stack.inspect(victim)["RestartCount"] > before and stack.health(victim) == "healthy",
                 UP_TIMEOUT_S, stack)
        stack.timings["restart-healthy"] = time.monotonic() - started
        time.sleep(3)
    stack.note("sigkill-to-healthy", f"{stack.timings['restart-healthy']:5.0f} s, searches meanwhile: "
               f"{dict(searching.statuses)}")
    failed = {status: n for status, n in searching.statuses.items() if status != 200}
    assert searching.statuses[200] > 0 and set(failed) <= {503}, searching.statuses
    assert failed.get(503, 0) <= 5, searching.statuses
    for photo in photos[:2 * REPLICAS]:
        assert stack.search(photo).status_code == 200
    assert stack.classified(victim) > 0, "the restarted replica serves again"


def test_a_reindex_while_serving_reaches_every_replica_and_no_search_fails(stack: Stack, photos: list[Path]) -> None:
    with Searching(stack, photos) as searching:
        result = stack.timed("reindex", "run", "--rm", "indexer")
        time.sleep(2)
    version = result.stdout.split("Published version ", 1)[1].split()[0]
    assert result.stdout.count(f"now serving {version}") == REPLICAS + 1, result.stdout
    for service in ("classifier", "similarity"):
        for container in stack.containers(service):
            readiness = httpx.get(stack.url(container) + "/readyz", timeout=10).json()
            assert readiness["index_version"] == version, (container, readiness)
    stack.note("searches-during-reindex", str(dict(searching.statuses)))
    assert set(searching.statuses) == {200}, searching.statuses
    assert searching.versions[-1] == version


def test_down_removes_every_container_volume_and_network_it_made(stack: Stack) -> None:
    stack.timed("down", "down", "--volumes", "--remove-orphans")
    assert docker_state() == stack.before
