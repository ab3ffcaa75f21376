"""Ports on loopback for what the stack, the benchmarks and the tests start for themselves.

A port is chosen free, then a server binds it a moment (or, for Milvus, seconds) later. Chosen
from the kernel's range for outgoing connections, it could meanwhile become the local port of some
connection, and the server would fail to bind: so ports are chosen below that range, where the
kernel never puts one.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

LOWEST = 10000
"""The lowest port chosen: above the well-known ones and those databases and dev servers listen on."""
_OUTGOING_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def _outgoing_range_start() -> int:
    """Where the kernel's ports for outgoing connections begin (32768 where it does not say)."""
    try:
        return int(_OUTGOING_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now, below the range outgoing connections take ports
    from; the kernel's choice where none is found there."""
    below = _outgoing_range_start()
    for port in random.sample(range(LOWEST, below), k=min(64, max(below - LOWEST, 0))):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def listener(port: int) -> socket.socket | None:
    """A socket listening on the loopback port, bound with SO_REUSEADDR as servers bind; None where it can't be
    bound: not while another listens there, but while a dead listener's connections linger in TIME_WAIT."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
        sock.listen()
    except OSError:
        sock.close()
        return None
    return sock


def bindable(port: int) -> bool:
    """Whether a server could listen on the loopback port now (see `listener`)."""
    sock = listener(port)
    if sock is None:
        return False
    sock.close()
    return True
