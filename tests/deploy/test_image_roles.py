"""The image's own install and start commands, run without Docker: a fresh venv from the image's
requirements files, installed by the Dockerfile's own RUN line, and every role started with the
Dockerfile's ENTRYPOINT, ENV and WORKDIR plus compose.yaml's command and environment.

What differs from the real image, and why:
- torch comes from the default index (PyPI), not PyTorch's CPU index, which is unreachable here;
- WEIGHTS is `random` instead of `imagenet`, since no weights can be downloaded here;
- hosts and ports are free loopback ones, and /data/... are temporary folders.

Installing torch takes minutes, so the venv is kept under test-output/, named by a hash of the
install command, the requirements files and the Python version: it is rebuilt when any changes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.deploy.dockerfile import Dockerfile, parse_dockerfile
from tests.support import REPO, free_port, wait_until_ok

SERVING = ["classifier", "similarity", "gateway"]
INSTALL_TIMEOUT_S = 1800

pytestmark = pytest.mark.image
REQUIREMENTS_DIR = "/tmp/requirements"
VENV_IN_IMAGE = "/opt/venv"


@pytest.fixture(scope="module")
def dockerfile() -> Dockerfile:
    return parse_dockerfile(REPO / "Dockerfile")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((REPO / "compose.yaml").read_text())


def install_command(dockerfile: Dockerfile) -> str:
    return next(run for run in dockerfile.args("RUN") if "pip install" in run)


def image_venv(dockerfile: Dockerfile, staging: Path) -> Path:
    """The image's venv, built here by the Dockerfile's own RUN line from its own requirements files."""
    requirements = staging / "requirements"
    requirements.mkdir(parents=True)
    for sources, destination in dockerfile.copied:
        if destination.rstrip("/") == REQUIREMENTS_DIR:
            for source in sources:
                shutil.copy(REPO / source, requirements / source)
    command = install_command(dockerfile)
    digest = hashlib.sha256(command.encode() + sys.version.encode())
    for path in sorted(requirements.iterdir()):
        digest.update(path.name.encode() + path.read_bytes())
    venv = REPO / "test-output" / f"image-venv-{digest.hexdigest()[:12]}"
    if (venv / ".complete").is_file():
        return venv
    for stale in venv.parent.glob("image-venv-*"):
        shutil.rmtree(stale)
    # `python` as the image has it: the interpreter this project's venv is based on. The venv links
    # to it through this path, so it lives inside the venv's folder, as long as the venv does.
    shim = venv / "base-python"
    shim.mkdir(parents=True)
    (shim / "python").symlink_to(os.path.realpath(getattr(sys, "_base_executable", sys.executable)))
    script = command.replace(VENV_IN_IMAGE, str(venv)).replace(REQUIREMENTS_DIR, str(requirements))
    env = {**os.environ, "PATH": f"{venv}/bin:{shim}:{os.environ['PATH']}",
           "TORCH_INDEX_URL": os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple")}
    started = time.monotonic()
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], env=env, capture_output=True, text=True,
                            timeout=INSTALL_TIMEOUT_S)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (venv / ".complete").write_text(f"installed in {time.monotonic() - started:.0f} s\n")
    return venv


@dataclass
class Roles:
    """The roles as the image would run them, on this machine."""

    dockerfile: Dockerfile
    compose: dict[str, Any]
    venv: Path
    app: Path
    volumes: dict[str, Path]
    logs: Path
    ports: dict[str, int] = field(default_factory=lambda: {name: free_port() for name in SERVING})
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def here(self, value: str) -> str:
        """A value from the image's world, for this machine: volumes, service URLs, weights."""
        for target, path in self.volumes.items():
            value = value.replace(target, str(path))
        for name in SERVING:
            value = value.replace(f"http://{name}:{self.dockerfile.last('EXPOSE')}", self.url(name))
        return "random" if value == "imagenet" else value

    def env(self, service: str) -> dict[str, str]:
        env = {key: value for key, value in self.dockerfile.env.items() if key != "PATH"}
        env.update({key: str(value) for key, value in self.compose["services"][service].get("environment", {}).items()})
        for name in SERVING:
            env[f"{name.upper()}_HOST"] = "127.0.0.1"
            env[f"{name.upper()}_PORT"] = str(self.ports[name])
        env = {key: self.here(value) for key, value in env.items()}
        return {**env, "PATH": f"{self.venv}/bin:/usr/bin:/bin", "HOME": str(self.logs)}

    def argv(self, service: str) -> list[str]:
        entrypoint = self.dockerfile.exec_form("ENTRYPOINT")
        assert entrypoint[0] == "python"
        return [str(self.venv / "bin" / "python"), *entrypoint[1:],
                *(self.here(arg) for arg in self.compose["services"][service]["command"])]

    def start(self, service: str) -> None:
        log = open(self.logs / f"{service}.log", "ab")
        self.processes[service] = subprocess.Popen(self.argv(service), cwd=self.app, env=self.env(service),
                                                   stdout=log, stderr=subprocess.STDOUT)

    def run(self, service: str, timeout_s: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(service), cwd=self.app, env=self.env(service), capture_output=True,
                              text=True, timeout=timeout_s)

    def healthcheck(self, service: str) -> subprocess.CompletedProcess[str]:
        """compose.yaml's healthcheck command, as Docker would run it inside the container."""
        test = self.compose["services"][service]["healthcheck"]["test"]
        assert test[:2] == ["CMD", "python"]
        port = self.dockerfile.last("EXPOSE")
        argv = [str(self.venv / "bin" / "python"),
                *(arg.replace(f"127.0.0.1:{port}", f"127.0.0.1:{self.ports[service]}") for arg in test[2:])]
        return subprocess.run(argv, cwd=self.app, env=self.env(service), capture_output=True, text=True, timeout=30)

    def wait(self, service: str, path: str, timeout_s: float = 180) -> None:
        wait_until_ok(self.url(service) + path, {service: self.processes[service]}, self.logs, timeout_s)

    def stop_all(self) -> None:
        for process in self.processes.values():
            process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(scope="module")
def roles(dockerfile: Dockerfile, compose: dict[str, Any], small_catalog: Path,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Roles]:
    staging = tmp_path_factory.mktemp("image")
    venv = image_venv(dockerfile, staging)
    app = staging / "app"
    for sources, destination in dockerfile.copied:
        if destination.rstrip("/") != REQUIREMENTS_DIR:
            for source in sources:
                shutil.copytree(REPO / source, app / destination, ignore=shutil.ignore_patterns("__pycache__"))
    volumes: dict[str, Path] = {}
    for service in compose["services"].values():
        for mount in service.get("volumes", []):
            if mount["type"] == "bind":
                volumes[mount["target"]] = small_catalog  # the store's catalogue, here a small real one
            else:
                volumes[mount["target"]] = staging / "volumes" / mount["source"]
                volumes[mount["target"]].mkdir(parents=True, exist_ok=True)
    stack = Roles(dockerfile, compose, venv, app, volumes, tmp_path_factory.mktemp("image-logs"))
    try:
        yield stack
    finally:
        stack.stop_all()


def test_the_serving_roles_start_from_the_image_venv_and_wait_for_an_index(roles: Roles) -> None:
    for service in ("classifier", "similarity"):
        roles.start(service)
    for service in ("classifier", "similarity"):
        roles.wait(service, "/healthz")
        assert httpx.get(roles.url(service) + "/readyz").status_code == 503
        assert roles.healthcheck(service).returncode != 0


def test_the_indexer_builds_an_index_and_the_running_roles_load_it(roles: Roles) -> None:
    result = roles.run("indexer")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Published version" in result.stdout
    assert result.stdout.count("now serving") == 2, result.stdout
    for service in ("classifier", "similarity"):
        roles.wait(service, "/readyz", timeout_s=30)


def test_the_gateway_starts_and_every_roles_healthcheck_passes(roles: Roles) -> None:
    roles.start("gateway")
    roles.wait("gateway", "/readyz")
    for service in SERVING:
        result = roles.healthcheck(service)
        assert result.returncode == 0, result.stderr


def test_a_search_through_the_image_roles_works(roles: Roles, query_photos: list[tuple[Path, str]]) -> None:
    photo, _ = query_photos[0]
    response = httpx.post(roles.url("gateway") + "/api/v1/search", params={"k": 3},
                          files={"image": (photo.name, photo.read_bytes(), "image/jpeg")}, timeout=60)
    assert response.status_code == 200, response.text
    assert response.json()["weights"] == "random" and len(response.json()["results"]) == 3
