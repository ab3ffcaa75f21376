"""Start one service under uvicorn with the project's logging."""

from __future__ import annotations

import logging
import os

import uvicorn

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def configure_logging() -> None:
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO").upper(), format=LOG_FORMAT)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per internal call is noise


def serve(app_factory: str, host: str, port: int) -> None:
    """Run `module:create_app` on host:port; SIGINT and SIGTERM shut it down gracefully."""
    configure_logging()
    uvicorn.run(app_factory, factory=True, host=host, port=port, log_config=None,
                timeout_graceful_shutdown=10)
