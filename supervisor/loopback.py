"""Ports on loopback for what the stack, the benchmarks and the tests start for themselves."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (the kernel's choice)."""
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
