"""What a service serves from the index: one loaded version, swapped whole on reload."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Generic, Protocol, TypeVar

from lookalike.catalog.layout import IndexLayout
from lookalike.errors import ApiError, NotReady

log = logging.getLogger("lookalike.serving")

MAX_CHASES = 5
"""Loads one reload makes while `current` keeps moving under it, before it settles for what it has."""


class Versioned(Protocol):
    @property
    def version(self) -> str: ...


Served = TypeVar("Served", bound=Versioned)


class ServedVersion(Generic[Served]):
    """What a service loaded from the index's current version, swapped whole by `reload`.

    A request takes `require()` once and keeps that object, so a reload in the middle of it never
    mixes two versions; until a new version has loaded completely, the old one keeps serving.

    Reloads run one at a time (a lock, taken on the reloading thread, never on the event loop), and
    a reload assigns only what is still `current` when its load finishes (compare-and-swap): if the
    job published or rolled back meanwhile, it loads the new `current` instead. So a slow load of v1
    finishing after a fast one of v2 can never leave the service behind the symlink.
    """

    def __init__(self, root: Path, load: Callable[[Path], Served], service: str) -> None:
        self.layout = IndexLayout(root)
        self._load = load
        self.service = service
        self.current: Served | None = None
        self.not_ready_reason: str | None = "the index has not been loaded yet"
        self._reloading = threading.Lock()

    def reload(self) -> tuple[str, str | None]:
        """(new version, previous version); on failure the previous version, if any, keeps serving."""
        with self._reloading:
            previous = self.current.version if self.current is not None else None
            for _ in range(MAX_CHASES):
                version_dir = self._require_current()
                if self.current is not None and self.current.version == version_dir.name:
                    return self.current.version, previous  # already serving it: an earlier reload won the race
                loaded = self._load_or_explain(version_dir)
                if self._still_current(loaded.version):
                    self.current, self.not_ready_reason = loaded, None
                    return loaded.version, previous
                log.info("%s service: %s stopped being current while it loaded; loading the new current",
                         self.service, loaded.version)
            raise NotReady(f"The {self.service} service could not catch up with the index: `current` changed "
                           f"{MAX_CHASES} times while it loaded. Reload again once the indexing job is done.")

    def _require_current(self) -> Path:
        try:
            return self.layout.require_current()
        except ApiError as exc:
            if self.current is None:
                self.not_ready_reason = exc.message
            raise

    def _load_or_explain(self, version_dir: Path) -> Served:
        try:
            return self._load(version_dir)
        except ApiError as exc:
            if self.current is None:
                self.not_ready_reason = exc.message
            raise

    def _still_current(self, version: str) -> bool:
        now = self.layout.current()
        return now is not None and now.name == version

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
