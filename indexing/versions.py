"""Old index versions: keep a few for rollback, delete the rest, and roll back in one command.

Pruning keeps the `keep` newest versions, the serving one, and every version a running service told
the job it holds (`held`: the versions its reloads answered with, or a refusing service's /readyz).
So a service whose reload failed, and which still serves an older version, never loses it; a service
the job was not told about (`--notify`) is not asked, and the operator lists every one there.

Rolling back is the same single rename as publishing: `current` is pointed at an older,
complete version directory, and the services are told to reload.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Collection
from pathlib import Path

from indexing.lock import exclusive
from lookalike.catalog.layout import IndexLayout, read_manifest
from lookalike.catalog.milvus_store import MilvusConnection, drop_version
from lookalike.errors import NoSuchVersion

log = logging.getLogger("lookalike.indexing")



def prune_versions(layout: IndexLayout, keep: int, milvus: MilvusConnection | None = None,
                   held: Collection[str] = ()) -> list[str]:
    """Delete all but the `keep` newest versions; the serving one and those in `held` are never deleted.

    Call under the lock. A version whose vectors are in Milvus has its collection dropped too (`milvus`, when given).
    """
    if keep < 1:
        raise ValueError("keep must be at least 1")
    current = layout.current()
    names = layout.published()
    spared = set(held) | ({current.name} if current is not None else set())
    doomed = [n for n in names[:-keep] if n not in spared]
    for name in doomed:
        if milvus is not None:
            drop_version(milvus, read_manifest(layout.versions / name))
        shutil.rmtree(layout.versions / name)
        log.info("deleted old index version %s", name)
    return doomed


def rollback(index_root: Path, to: str | None = None) -> tuple[str, str]:
    """Point `current` at version `to`, or at the newest one older than the serving one; (new, old)."""
    layout = IndexLayout(index_root)
    with exclusive(layout.root):
        current = layout.current()
        names = layout.published()
        if current is None:
            raise NoSuchVersion(f"There is no serving index at {layout.root} to roll back from.")
        if to is None:
            older = [n for n in names if n < current.name]
            if not older:
                raise NoSuchVersion(f"{current.name} is the oldest version kept; there is nothing to roll back to.")
            to = older[-1]
        if to not in names:
            raise NoSuchVersion(f"There is no version {to!r}. Versions kept: {', '.join(names)}.")
        layout.point_to(to)
        log.info("rolled back from %s to %s", current.name, to)
        return to, current.name
