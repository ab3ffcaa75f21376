"""Ports on loopback for what the stack, the benchmarks and the tests start for themselves."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (the kernel's choice)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bindable(port: int) -> bool:
    """Whether a listener could bind the loopback port now without SO_REUSEADDR (as milvus-server tries it):
    not while another listens there, nor while a dead listener's connections linger in TIME_WAIT."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True
