"""`make run` (`lookalike run`), one machine's stack: build a missing index, start the three services, stop them together.

Each service runs in its own process group, so Ctrl-C reaches only this supervisor, which
stops them in order. They also get SIGTERM from the kernel if the supervisor itself dies
(Linux's parent-death signal), so no orphan outlives a `kill -9`.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

import httpx

from indexing.catalog import default_catalog
from lookalike.settings import VectorStoreSettings, read_command_line
from supervisor.milvus_local import LocalMilvus
from supervisor.settings import StackSettings

PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class Service:
    name: str
    module: str
    port_env: str


SERVICES = [
    Service("classifier", "classifier_service", "CLASSIFIER_PORT"),
    Service("similarity", "similarity_service", "SIMILARITY_PORT"),
    Service("gateway", "gateway", "GATEWAY_PORT"),
]


def say(message: str) -> None:
    print(f"[lookalike] {message}", flush=True)


def _die_with_parent() -> None:
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass  # not Linux: Ctrl-C still stops everything through this supervisor


def start(service: Service, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", service.module], env=env,
                            start_new_session=True, preexec_fn=_die_with_parent)


def stop_all(processes: dict[str, subprocess.Popen[bytes]], grace_s: float = 15.0) -> None:
    for process in processes.values():
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + grace_s
    for name, process in processes.items():
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            say(f"{name} did not stop in {grace_s:.0f} s; killing it")
            process.kill()
            process.wait()


def wait_ready(url: str, processes: dict[str, subprocess.Popen[bytes]], timeout_s: float = 300) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in processes.values()):
            return False
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    return False


def run_stack(settings: StackSettings) -> int:
    """Build the index when missing, start the services, stop them together; with VECTOR_STORE=milvus and no
    MILVUS_URI, a local Milvus standalone first, kept beside the index and stopped with the rest."""
    store = VectorStoreSettings()
    if store.vector_store == "milvus" and not store.milvus_uri:
        milvus = LocalMilvus(settings.index.parent / "milvus", settings.milvus_port)
        say(f"starting a local Milvus standalone on {milvus.uri} (data in {milvus.data_dir})")
        try:
            with milvus.start():
                return serve_stack(settings, {"MILVUS_URI": milvus.uri})
        finally:
            say("Milvus stopped")
    return serve_stack(settings, {})


def serve_stack(settings: StackSettings, extra_env: dict[str, str]) -> int:
    index, weights = settings.index, settings.weights
    # What the flags said reaches the services as their environment.
    env = {**os.environ, "INDEX": str(index), "WEIGHTS": weights, **extra_env,
           **{service.port_env: str(settings.port(service.name)) for service in SERVICES}}
    if not (index / "current").exists():
        catalog, note = default_catalog(settings.catalog)
        if note:
            say(note)
        say(f"no index at {index}; building it from {catalog} (weights={weights})")
        built = subprocess.run([sys.executable, "-m", "indexing", "--catalog", str(catalog), "--index", str(index),
                                "--weights", weights], env=env)
        if built.returncode != 0:
            return built.returncode

    processes: dict[str, subprocess.Popen[bytes]] = {}
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        for service in SERVICES:
            processes[service.name] = start(service, env)
        gateway = f"http://127.0.0.1:{settings.gateway_port}"
        if wait_ready(f"{gateway}/readyz", processes):
            say(f"ready: open {gateway}/  (API docs: {gateway}/docs). Ctrl-C stops all three.")
        while not stopping:
            for name, process in processes.items():
                if process.poll() is not None:
                    say(f"{name} exited with status {process.returncode}; stopping the others")
                    return 1
            time.sleep(0.3)
        say("stopping")
        return 0
    finally:
        stop_all(processes)


def main(argv: list[str] | None = None) -> int:
    return run_stack(read_command_line(StackSettings, argv, prog="python -m supervisor.stack"))


if __name__ == "__main__":
    sys.exit(main())
