"""A local Milvus standalone from PyPI's `milvus` package: for `make run VECTOR_STORE=milvus` and the tests.

`milvus-server` unpacks the real server binary (with its embedded etcd and local storage) into
the data folder and runs it; pymilvus talks to it over gRPC on loopback, the same API as a
Milvus cluster. It runs through `supervisor.milvus_server`, whose port check lets it start again
at once after a crash.

On SIGTERM the server stops gracefully for at most GRACEFUL_STOP_S (Milvus's own default is 30
minutes: a standalone server holding a loaded collection waits all that time for another query
node to take its segments over, and there is none); `stop` still kills what is left after STOP_GRACE_S.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path
from types import TracebackType

import grpc
from pymilvus import MilvusClient, MilvusException

from supervisor.loopback import bindable, free_port

GRACEFUL_STOP_S = 3
STOP_GRACE_S = 20.0


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


class LocalMilvus:
    """One Milvus standalone process on a free loopback port, its data in `data_dir`."""

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        # The embedded etcd's ports: its peer port is fixed (2380) unless its own config file says otherwise,
        # which keeps a second server, or one restarted while the dead one's sockets linger, from starting.
        self.etcd_port, self.etcd_peer_port = free_port(), free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 300.0) -> LocalMilvus:
        """Start the server and wait until it answers; RuntimeError with its log's tail if it does not.

        `milvus-server` refuses to start when the port asked for can't be bound (another server listens
        there, one that is still stopping): so it is started only once the port can be bound, and
        started again if it exits.
        """
        if self.process is not None:
            raise RuntimeError(f"This Milvus on {self.uri} is started already")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + timeout_s
        self.process = self._spawn_when_bindable(deadline)
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.kill()
                time.sleep(5.0)
                self.process = self._spawn_when_bindable(deadline)
                continue
            if self.answers():
                return self
            time.sleep(1.0)
        self.stop()
        raise RuntimeError(f"Milvus did not answer on {self.uri} within {timeout_s:.0f} s: {self.log_tail()}")

    def _spawn_when_bindable(self, deadline: float) -> subprocess.Popen[bytes]:
        while not bindable(self.port):
            if time.monotonic() > deadline:
                raise RuntimeError(f"Port {self.port} stayed taken; Milvus could not start on {self.uri}")
            time.sleep(1.0)
        return self._spawn()

    def _spawn(self) -> subprocess.Popen[bytes]:
        client, peer = f"http://127.0.0.1:{self.etcd_port}", f"http://127.0.0.1:{self.etcd_peer_port}"
        etcd_config = self.data_dir / "embed-etcd.yaml"
        etcd_config.write_text(f"name: default\nlisten-client-urls: {client}\nadvertise-client-urls: {client}\n"
                               f"listen-peer-urls: {peer}\ninitial-advertise-peer-urls: {peer}\n"
                               f"initial-cluster: default={peer}\n")
        with (self.data_dir / "server.log").open("ab") as log:
            return subprocess.Popen([sys.executable, "-m", "supervisor.milvus_server", "--data", str(self.data_dir),
                                     "--proxy-port", str(self.port), "--etcd-port", str(self.etcd_port),
                                     "--extra-config", f"common.gracefulStopTimeout={GRACEFUL_STOP_S}"],
                                    env={**os.environ, "ETCD_CONFIG_PATH": str(etcd_config)},
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def answers(self) -> bool:
        try:  # the port first: pymilvus logs an error for every refused connection
            socket.create_connection(("127.0.0.1", self.port), timeout=1.0).close()
        except OSError:
            return False
        try:
            client = MilvusClient(uri=self.uri, timeout=2)  # whole seconds, as in MilvusConnection
        except (MilvusException, grpc.RpcError):
            return False
        try:
            client.get_server_version(timeout=2)  # whole seconds: see MilvusConnection
        except (MilvusException, grpc.RpcError):
            return False
        finally:
            client.close()
        return True

    def stop(self) -> None:
        """SIGTERM to the server's process group, then SIGKILL to what is left after STOP_GRACE_S.

        `milvus-server` exits at once on SIGTERM, but the server binary it started may go on for a
        while, so the whole group is waited for, not just the process we started.
        """
        process, self.process = self.process, None
        if process is None:
            return
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        while group_alive(process.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
            process.poll()
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def kill(self) -> None:
        """SIGKILL, as a crash would: for the fault tests."""
        process, self.process = self.process, None
        if process is not None:  # the whole group: the server binary outlives an exited milvus-server
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def log_tail(self, lines: int = 20) -> str:
        path = self.data_dir / "server.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def __enter__(self) -> LocalMilvus:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
