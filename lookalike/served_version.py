"""What a service serves from the index: one loaded version, swapped whole on reload."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Generic, Protocol, TypeVar

from lookalike.catalog.layout import IndexLayout
from lookalike.errors import ApiError, NotReady

log = logging.getLogger("lookalike.serving")


class Versioned(Protocol):
    @property
    def version(self) -> str: ...


Served = TypeVar("Served", bound=Versioned)


class ServedVersion(Generic[Served]):
    """What a service loaded from the index's current version, swapped whole by `reload`.

    A request takes `require()` once and keeps that object, so a reload in the middle of it never
    mixes two versions; until a new version has loaded completely, the old one keeps serving.
    """

    def __init__(self, root: Path, load: Callable[[Path], Served], service: str) -> None:
        self.layout = IndexLayout(root)
        self._load = load
        self.service = service
        self.current: Served | None = None
        self.not_ready_reason: str | None = "the index has not been loaded yet"

    def reload(self) -> tuple[str, str | None]:
        """(new version, previous version); on failure the previous version, if any, keeps serving."""
        try:
            loaded = self._load(self.layout.require_current())
        except ApiError as exc:
            if self.current is None:
                self.not_ready_reason = exc.message
            raise
        previous = self.current.version if self.current is not None else None
        self.current, self.not_ready_reason = loaded, None
        return loaded.version, previous

    def load_at_start(self) -> None:
        """Load the current version if there is one; if not, `not_ready_reason` says why and a reload retries."""
        try:
            self.reload()
        except ApiError:
            log.warning("%s service not ready: %s", self.service, self.not_ready_reason)

    def require(self) -> Served:
        current = self.current
        if current is None:
            raise NotReady(f"The {self.service} service is not ready: {self.not_ready_reason}")
        return current
