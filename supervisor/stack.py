"""`make run` (`lookalike run`), one machine's stack: build a missing index, start the three services, stop them together.

Each service runs in its own process group, so Ctrl-C reaches only this supervisor, which
stops them in order. They also get SIGTERM from the kernel if the supervisor itself dies
(Linux's parent-death signal), so no orphan outlives a `kill -9`.
"""

from __future__ import annotations

import ctypes
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from indexing.catalog import default_catalog
from lookalike.catalog.layout import IndexLayout, read_manifest
from lookalike.catalog.vector_store import VectorStoreKind
from lookalike.errors import StackNotReady
from lookalike.program import Program
from lookalike.settings import InternalAccess, VectorStoreSettings
from supervisor.loopback import free_port
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


@dataclass(frozen=True)
class LoopbackStack:
    """Services a job started for itself, each on a free loopback port: reached only over HTTP."""

    processes: dict[str, subprocess.Popen[bytes]]
    ports: dict[str, int]

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"


@contextmanager
def loopback_stack(env: Mapping[str, str], ready: Mapping[str, str], timeout_s: float = 300) -> Iterator[LoopbackStack]:
    """Start the services `ready` names, with `env` over this environment, and wait until each answers 200 on its
    path there (`/readyz`, or `/healthz` for one that cannot be ready alone); stop them all on the way out.

    Every service gets a free port, started or not, so a gateway finds the ones that were; StackNotReady when
    one exits or does not answer in `timeout_s` (its output, on this one's, says why).
    """
    ports = {service.name: free_port() for service in SERVICES}
    full_env = {**os.environ, **env, **{service.port_env: str(ports[service.name]) for service in SERVICES}}
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for service in SERVICES:
            if service.name in ready:
                processes[service.name] = start(service, full_env)
        stack = LoopbackStack(processes, ports)
        for name, path in ready.items():
            if not wait_ready(stack.url(name) + path, processes, timeout_s):
                raise StackNotReady(f"The {name} service did not answer {path} on {stack.url(name)}; its output "
                                    "above says why (`make run` with the same settings shows it too).")
        yield stack
    finally:
        stop_all(processes)


def why_build(index: Path, vector_store: str) -> str | None:
    """Why the stack must build an index version before it serves, or None: there is none, the serving one holds no
    fp32 ONNX network (built before ONNX serving), or it keeps its vectors in the other store (`make run
    VECTOR_STORE=milvus` after a Faiss demo, or the other way round)."""
    current = IndexLayout(index).current()
    if current is None:
        return f"no index at {index}"
    manifest = read_manifest(current)
    if manifest.network is None:
        return (f"the index at {index} was built before the classifier served through ONNX Runtime "
                "(it holds no fp32 network)")
    record = manifest.vector_store
    kept = record.kind if record is not None else VectorStoreKind.FAISS
    if kept != vector_store:
        return f"the index at {index} keeps its vectors in {kept}, and VECTOR_STORE={vector_store}"
    return None


def run_stack(settings: StackSettings) -> int:
    """Build the index when missing, start the services, stop them together; with VECTOR_STORE=milvus and no
    MILVUS_URI, a local Milvus standalone first, kept beside the index and stopped with the rest."""
    store = VectorStoreSettings()
    if store.vector_store == "milvus" and not store.milvus_uri:
        milvus = LocalMilvus(settings.index.parent / "milvus", settings.milvus_port)
        say(f"starting a local Milvus standalone on {milvus.uri} (data in {milvus.data_dir})")
        try:
            with milvus:  # started here, once; stopped on the way out
                return serve_stack(settings, store.vector_store, {"MILVUS_URI": milvus.uri})
        finally:
            say("Milvus stopped")
    return serve_stack(settings, store.vector_store, {})


def internal_token_file(index: Path) -> Path:
    """Where `make run` keeps this run's internal token, for `make index` and `make rollback` (the Makefile reads it)."""
    return index.parent / "internal-token"


def internal_token_for_run(index: Path) -> str:
    """LOOKALIKE_INTERNAL_TOKEN as set, else a random one for this run, written (owner-only) beside the index."""
    configured = InternalAccess().internal_token
    if configured is not None:
        return configured.get_secret_value()
    token = secrets.token_urlsafe(32)
    path = internal_token_file(index)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(token + "\n")
    say(f"internal token for reloads: made one for this run, in {path} (`make index` sends it)")
    return token


def serve_stack(settings: StackSettings, vector_store: str, extra_env: dict[str, str]) -> int:
    index, weights = settings.index, settings.weights
    # What the flags said reaches the services as their environment; the internal token too, so the job's
    # and the operator's reloads are accepted and nobody else's.
    env = {**os.environ, "INDEX": str(index), "WEIGHTS": weights, **extra_env,
           "LOOKALIKE_INTERNAL_TOKEN": internal_token_for_run(index),
           **{service.port_env: str(settings.port(service.name)) for service in SERVICES}}
    missing = why_build(index, vector_store)
    if missing:
        catalog, note = default_catalog(settings.catalog)
        if note:
            say(note)
        say(f"{missing}; building it from {catalog} (weights={weights})")
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


PROGRAM = Program(StackSettings, run_stack, prog="python -m supervisor.stack")

if __name__ == "__main__":
    sys.exit(PROGRAM.main())
