"""One JSON object per log line, stamped with the program and the current request id.

Apart from `lookalike.observability` (the HTTP middleware that sets the request id) so that a
program without a web framework, such as the index job's torch child, can log the same way.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar

from pythonjsonlogger.json import JsonFormatter

from lookalike.settings import LoggingSettings

REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)
"""The id of the request being served; set by `lookalike.observability`'s middleware."""


class _ContextFields(logging.Filter):
    """Stamps every log record with the service name and the current request id."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self.service
        # An id passed in `extra` stands when no request context is left, e.g. in the 500 handler.
        record.request_id = REQUEST_ID.get() or getattr(record, "request_id", None)
        return True


def configure_root_logging(service: str, level: str = "INFO", fmt: str = "json") -> None:
    """Root logging: one JSON object per line (`fmt="text"` for a human at a terminal)."""
    handler = logging.StreamHandler()
    handler.addFilter(_ContextFields(service))
    if fmt == "text":
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)s %(service)s %(name)s [%(request_id)s] %(message)s"))
    else:
        handler.setFormatter(JsonFormatter(
            "%(asctime)s %(levelname)s %(service)s %(name)s %(request_id)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"}, json_ensure_ascii=False))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)


def configure_logging(program: str = "indexing") -> None:
    """JSON lines on stderr (`LOG_FORMAT=text` for people); `LOG_LEVEL` picks the level."""
    settings = LoggingSettings()
    configure_root_logging(program, settings.level, settings.format)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per internal call is noise
