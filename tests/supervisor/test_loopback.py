"""Loopback ports for what the stack starts: a crashed server's port is free again at once, a listened one is not,
and none is one an outgoing connection could take first."""

from __future__ import annotations

import socket
from pathlib import Path

from supervisor.loopback import LOWEST, bindable, free_port


def test_a_port_someone_listens_on_is_not_bindable() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        assert not bindable(listener.getsockname()[1])


def test_a_dead_servers_port_is_bindable_while_its_connections_linger_in_time_wait() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    served, _ = listener.accept()
    listener.close()
    served.close()  # the server's side closes first, as when it dies: its end waits in TIME_WAIT on `port`
    assert client.recv(1) == b""
    client.close()
    with socket.socket() as plain:  # without SO_REUSEADDR (as milvus-server's own check binds) it is refused
        try:
            plain.bind(("127.0.0.1", port))
        except OSError:
            pass
        else:
            raise AssertionError("no TIME_WAIT left on the port: the test proves nothing")
    assert bindable(port)


def test_free_port_is_bindable() -> None:
    assert bindable(free_port())


def test_free_ports_lie_below_the_range_outgoing_connections_take_ports_from() -> None:
    start = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    assert all(LOWEST <= free_port() < start for _ in range(20))
