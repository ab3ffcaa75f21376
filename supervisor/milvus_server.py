"""`python -m supervisor.milvus_server`: PyPI's `milvus-server`, with its port check binding as the server does.

`milvus-server` (a Python wrapper) first binds each port it will hand the Milvus binary, to see that
it is free, but without SO_REUSEADDR: right after a crash, the dead server's connections linger in
TIME_WAIT on its port for a minute, the check fails, and the wrapper refuses to start. The binary
itself (Go) listens with SO_REUSEADDR and could start at once; so does the check here. It still
fails while another process listens on the port: SO_REUSEADDR never lets two listeners share one.
"""

from __future__ import annotations

import socket
import sys

from milvus import MilvusServerConfig, main  # type: ignore[import-untyped]  # the pinned wrapper has no types

from supervisor.loopback import listener


def try_bind_port(config: MilvusServerConfig, port: int) -> socket.socket | None:
    """The wrapper's own check (a listening socket on the port, or None), with the binary's SO_REUSEADDR."""
    return listener(port)


if __name__ == "__main__":
    MilvusServerConfig.try_bind_port = try_bind_port
    sys.exit(main())
