"""Start one service under uvicorn with the project's logging."""

from __future__ import annotations

import logging
import os

import uvicorn

from lookalike import observability


def configure_logging(service: str = "indexing") -> None:
    """JSON lines on stderr (`LOG_FORMAT=text` for people); `LOG_LEVEL` picks the level."""
    observability.configure_logging(service, os.environ.get("LOG_LEVEL", "INFO"),
                                    os.environ.get("LOG_FORMAT", "json").lower())
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per internal call is noise


def serve(app_factory: str, host: str, port: int) -> None:
    """Run `module:create_app` on host:port; SIGINT and SIGTERM shut it down gracefully.

    uvicorn's access log is off: the observability middleware writes one line per request,
    with its request id, status and duration.
    """
    configure_logging(app_factory.split(".", 1)[0].removesuffix("_service"))
    uvicorn.run(app_factory, factory=True, host=host, port=port, log_config=None, access_log=False,
                timeout_graceful_shutdown=10)
