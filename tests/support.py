"""What the tests share besides fixtures: where the repo and the photos are, and running services."""

from __future__ import annotations

import csv
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Iterator

import httpx

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "furniture"


def write_csv(path: Path, rows: list[dict[str, str]], fieldnames: list[str] | None = None) -> Path:
    """A products.csv or labels.csv, as a store or a query set would have it."""
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fieldnames or list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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


@dataclass
class Services:
    """The three services as real processes; tests may stop and restart one."""

    index: Path
    logs: Path
    ports: dict[str, int] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    extra_env: dict[str, str] = field(default_factory=dict)  # e.g. short timeouts for fault tests
    modules: ClassVar[dict[str, str]] = {"classifier": "classifier_service", "similarity": "similarity_service", "gateway": "gateway"}

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    @property
    def gateway(self) -> str:
        return self.url("gateway")

    def env(self) -> dict[str, str]:
        return {**os.environ, "INDEX": str(self.index), "WEIGHTS": "random", "PRECISION": "fp32",
                "CLASSIFIER_PORT": str(self.ports["classifier"]), "SIMILARITY_PORT": str(self.ports["similarity"]),
                "GATEWAY_PORT": str(self.ports["gateway"]), **self.extra_env}

    def start(self, name: str, module: str | None = None, env: dict[str, str] | None = None) -> None:
        """Start `name`; a further replica passes the module it runs and its own settings."""
        self.ports.setdefault(name, free_port())
        log = open(self.logs / f"{name}.log", "ab")
        self.processes[name] = subprocess.Popen([sys.executable, "-m", module or self.modules[name]], cwd=REPO,
                                                env={**self.env(), **(env or {})}, stdout=log, stderr=subprocess.STDOUT)

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
    def running(self) -> Iterator[Services]:
        """The three services on free ports, started and ready; all stopped afterwards."""
        self.ports = {name: free_port() for name in self.modules}
        for name in self.modules:
            self.start(name)
        try:
            self.wait_ready()
            yield self
        finally:
            self.stop_all()

    def wait_ready(self, name: str = "gateway", timeout_s: float = 120, path: str = "/readyz") -> None:
        """Until `name` answers 200 on `path`; `path="/healthz"` waits for a service that cannot be ready."""
        wait_until_ok(self.url(name) + path, self.processes, self.logs, timeout_s)
