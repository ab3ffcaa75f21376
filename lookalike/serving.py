"""Start one service under uvicorn with the project's logging."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TypeVar

import uvicorn
from fastapi import FastAPI

from lookalike.http_protocol import with_head_limits
from lookalike.log_lines import configure_logging
from lookalike.program import Program
from lookalike.settings import ConnectionLimits, ServiceSettings

Listening = TypeVar("Listening", bound=ServiceSettings)


def serve(program: str, create_app: Callable[[], FastAPI], host: str, port: int,
          limits: ConnectionLimits | None = None) -> None:
    """Run the app `create_app` makes on host:port; SIGINT and SIGTERM shut it down gracefully.

    The app is made from settings the caller read (flags, else the environment). uvicorn's access
    log is off: the observability middleware writes one line per request, with its request id,
    status and duration. `limits` (from the environment by default) caps connections, idle
    keep-alive and the request head; see lookalike/settings.py. uvicorn's own proxy-header handling
    is off: it would trust FORWARDED_ALLOW_IPS behind the settings' back (the gateway installs it itself).
    """
    limits = limits or ConnectionLimits()
    configure_logging(program)
    uvicorn.run(create_app, factory=True, host=host, port=port, log_config=None, access_log=False,
                timeout_graceful_shutdown=10, http=with_head_limits(limits.header_timeout_s, limits.max_header_bytes),
                limit_concurrency=limits.max_connections, timeout_keep_alive=limits.keep_alive_s,
                proxy_headers=False)


def service_program(program: str, settings: type[Listening], create_app: Callable[[Listening], FastAPI],
                    prog: str) -> Program[Listening]:
    """A service's command: read its settings, then serve the app `create_app` makes of them on their host and port."""

    def run(read: Listening) -> int:
        serve(program, partial(create_app, read), read.host, read.port)
        return 0

    return Program(settings, run, prog)
