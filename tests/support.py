"""What the tests share besides fixtures: where the repo and the photos are, and running services."""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import httpx
import numpy as np
import pytest
from pydantic import SecretStr
from starlette.testclient import httpx as testclient_httpx

from supervisor.loopback import free_port

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "furniture"
INTERNAL_TOKEN = SecretStr("tests-internal-token-" + "x" * 24)
"""The LOOKALIKE_INTERNAL_TOKEN every stack a test starts accepts reloads with."""

ClientResponse = testclient_httpx.Response
"""What TestClient answers: httpx's Response, or httpx2's where that is installed (huggingface_hub brings it)."""


def write_csv(path: Path, rows: list[dict[str, str]], fieldnames: list[str] | None = None) -> Path:
    """A products.csv or labels.csv, as a store or a query set would have it."""
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fieldnames or list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def demo_rows(shared: Path) -> list[dict[str, str]]:
    """The demo catalogue's products.csv, row by row."""
    with open(shared / "catalog" / "products.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def write_catalog(shared: Path, root: Path, rows: list[dict[str, str]], fieldnames: list[str] | None = None) -> Path:
    """A catalogue folder at `root`: each row's photo copied from the demo catalogue (to the row's `file`, which
    may rename it), and the rows as its products.csv."""
    for row in rows:
        source = row.get("source_file", row["file"])
        (root / row["file"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shared / "catalog" / source, root / row["file"])
    write_csv(root / "products.csv", [{k: v for k, v in row.items() if k != "source_file"} for row in rows], fieldnames)
    return root


def clusters(n_per: int = 30, dim: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three well-separated clusters of embeddings and their labels, for fitting a head."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(3, dim)) * 3
    x = np.concatenate([c + rng.normal(size=(n_per, dim)) for c in centres]).astype(np.float32)
    return x, np.repeat(np.arange(3), n_per)


def wait_until_ok(url: str, processes: dict[str, subprocess.Popen[bytes]], logs: Path, timeout_s: float) -> None:
    """Until `url` answers 200; if one of `processes` exits meanwhile, fail at once with its log's tail."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for service, process in processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"{service} exited: {(logs / f'{service}.log').read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} not 200 in {timeout_s} s; logs in {logs}")


UNLIMITED = {"GATEWAY_SEARCHES_PER_MINUTE": "0", "GATEWAY_VOTES_PER_MINUTE": "0", "GATEWAY_EVENTS_PER_MINUTE": "0"}
"""The gateway's fair shares off: for stacks that a test, a benchmark or an evaluation drives from one address."""
OPERATOR_TOKEN = "operator-token-of-the-test-stacks"
"""LOOKALIKE_ADMIN_TOKEN of the test stacks: /metrics and the operator routes ask for it."""


def operator(token: str = OPERATOR_TOKEN) -> dict[str, str]:
    """The header that reads the gateway's /metrics and operator routes."""
    return {"Authorization": f"Bearer {token}"}


PORT_VARIABLES = {"classifier_service": "CLASSIFIER_PORT", "similarity_service": "SIMILARITY_PORT",
                  "gateway": "GATEWAY_PORT"}


@dataclass(frozen=True)
class Replica:
    """One more process of a service, beside the three: e.g. a second classifier."""

    module: str
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class Services:
    """The three services as real processes; tests may stop and restart one."""

    index: Path
    logs: Path
    ports: dict[str, int] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    extra_env: dict[str, str] = field(default_factory=dict)  # e.g. short timeouts for fault tests
    modules: ClassVar[dict[str, str]] = {"classifier": "classifier_service", "similarity": "similarity_service",
                                         "gateway": "gateway"}

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    @property
    def gateway(self) -> str:
        return self.url("gateway")

    def env(self) -> dict[str, str]:
        # TEXT_MODEL=none: a stack serves bm25 alone unless a test asks for the sentence model (tests/gateway/
        # test_text_model.py), which would add seconds and hundreds of MB to every service start.
        # The whole suite sends from 127.0.0.1, one client to the fair shares: a stack serves it without them
        # unless a test sets them (tests/gateway/test_fair_shares.py). /metrics asks for the operator token.
        return {**os.environ, "INDEX": str(self.index), "WEIGHTS": "random", "PRECISION": "fp32", "TEXT_MODEL": "none",
                "HF_HUB_OFFLINE": "1", **UNLIMITED, "LOOKALIKE_ADMIN_TOKEN": OPERATOR_TOKEN,
                "LOOKALIKE_INTERNAL_TOKEN": INTERNAL_TOKEN.get_secret_value(),
                "CLASSIFIER_PORT": str(self.ports["classifier"]), "SIMILARITY_PORT": str(self.ports["similarity"]),
                "GATEWAY_PORT": str(self.ports["gateway"]), **self.extra_env}

    def start(self, name: str, module: str | None = None, env: Mapping[str, str] | None = None) -> None:
        """Start `name`; a further replica passes the module it runs, and listens on its own port."""
        module = module or self.modules[name]
        self.ports.setdefault(name, free_port())
        own_port = {PORT_VARIABLES[module]: str(self.ports[name])}
        with open(self.logs / f"{name}.log", "ab") as log:  # the child keeps its own copy of the descriptor
            self.processes[name] = subprocess.Popen([sys.executable, "-m", module], cwd=REPO,
                                                    env={**self.env(), **own_port, **(env or {})},
                                                    stdout=log, stderr=subprocess.STDOUT)

    def stop(self, name: str) -> None:
        process = self.processes.pop(name)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)

    def kill(self, name: str) -> None:
        """SIGKILL: a crash, with no chance to clean up."""
        process = self.processes.pop(name)
        process.kill()
        process.wait(timeout=30)

    def pause(self, name: str) -> None:
        """SIGSTOP: the process holds its connections but answers nothing, like a hung service."""
        self.processes[name].send_signal(signal.SIGSTOP)

    def resume(self, name: str) -> None:
        self.processes[name].send_signal(signal.SIGCONT)

    def pid(self, name: str) -> int:
        return self.processes[name].pid

    def stop_all(self) -> None:
        for name in list(self.processes):
            self.resume(name)  # a paused process can't handle SIGTERM
            self.stop(name)

    @contextmanager
    def running(self, names: Sequence[str] | None = None, *, replicas: Mapping[str, Replica] | None = None,
                env: Mapping[str, Mapping[str, str]] | None = None, ready: Sequence[str] = ("gateway",),
                alive: Sequence[str] = ()) -> Iterator[Services]:
        """Start `names` (default: all three) and `replicas` on free ports; stop them all afterwards.

        `env` adds settings for one service; waits until each of `ready` answers /readyz, and each
        of `alive` (services that cannot be ready) answers /healthz. Ports set beforehand are kept,
        so a second gateway can share another stack's services.
        """
        replicas = replicas or {}
        for name in [*self.modules, *replicas]:
            self.ports.setdefault(name, free_port())
        try:
            for name in self.modules if names is None else names:
                self.start(name, env=(env or {}).get(name))
            for name, replica in replicas.items():
                self.start(name, replica.module, {**replica.env, **(env or {}).get(name, {})})
            for name in ready:
                self.wait_ready(name)
            for name in alive:
                self.wait_ready(name, path="/healthz")
            yield self
        finally:
            self.stop_all()

    def wait_ready(self, name: str = "gateway", timeout_s: float = 300, path: str = "/readyz") -> None:
        """Until `name` answers 200 on `path`; `path="/healthz"` waits for a service that cannot be ready."""
        wait_until_ok(self.url(name) + path, self.processes, self.logs, timeout_s)


def postgres_binary(name: str) -> Path | None:
    """initdb or pg_ctl: on PATH, else where Debian's postgresql package puts them."""
    found = shutil.which(name)
    if found:
        return Path(found)
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True)
    return candidates[0] if candidates else None


def require_postgres() -> None:
    """Skip the test where PostgreSQL is not installed; fail it in CI, whose .ci/run installs it."""
    if postgres_binary("initdb") is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is missing: .ci/run installs it with apt-get")
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")


@contextmanager
def postgres_server() -> Iterator[str]:
    """A throwaway PostgreSQL on a free loopback port in a temp dir; yields its URL, stops and deletes it after.

    initdb refuses to run as root, so as root the server runs as the `postgres` user (Debian's
    package creates it) in a directory that user owns.
    """
    initdb, pg_ctl = postgres_binary("initdb"), postgres_binary("pg_ctl")
    if initdb is None or pg_ctl is None:
        raise FileNotFoundError("PostgreSQL is not installed: `apt-get install postgresql` (.ci/run does)")
    root = Path(tempfile.mkdtemp(prefix="lookalike-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = root / "data", free_port()
    subprocess.run([*as_user, str(initdb), "-D", str(data), "-U", "lookalike", "--auth=trust", "-E", "UTF8",
                    "--no-sync"], check=True, capture_output=True)
    options = f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={root} -c fsync=off"
    subprocess.run([*as_user, str(pg_ctl), "-D", str(data), "-l", str(root / "server.log"), "-o", options, "-w",
                    "-t", "60", "start"], check=True, capture_output=True)
    try:
        yield f"postgresql://lookalike@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, str(pg_ctl), "-D", str(data), "-m", "fast", "-w", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
