"""One indexing job per index root at a time: an advisory `flock` on `<index>/.lock`.

The kernel drops the lock when the process ends, however it ends (kill -9 included), so a
crashed job never leaves the index locked.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lookalike.errors import IndexBusy

LOCK_FILE = ".lock"


@contextmanager
def exclusive(index_root: Path) -> Iterator[None]:
    """Hold the index root for the duration; IndexBusy at once if another job holds it."""
    index_root = Path(index_root)
    index_root.mkdir(parents=True, exist_ok=True)
    with open(index_root / LOCK_FILE, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "unknown"
            raise IndexBusy(f"Another indexing job (pid {holder}) is working on {index_root}. "
                            "Wait for it to finish, or stop it, then run this again.") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
