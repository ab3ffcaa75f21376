"""The SQLite files a batch job keeps between runs (embeddings, text vectors, a feed's photos)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path


def open_job_database(path: Path, schema: str) -> sqlite3.Connection:
    """Open (or make) the file with its tables, for one thread.

    Transactions are explicit (`BEGIN` inside `with db`). WAL with synchronous=NORMAL: a run stopped at
    any point (Ctrl-C, kill -9, a full disk) keeps every committed transaction, and loses at most the last.
    """
    db = sqlite3.connect(Path(path), isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.executescript(schema)
    return db


@contextmanager
def retaining(db: sqlite3.Connection, keys: Iterable[str]) -> Iterator[None]:
    """One transaction in which the temporary table `retained (key)` holds `keys`: for forgetting every row
    but those a build just published, with `... NOT IN (SELECT key FROM retained)`."""
    with db:
        db.execute("BEGIN")
        db.execute("CREATE TEMP TABLE IF NOT EXISTS retained (key TEXT PRIMARY KEY)")
        db.execute("DELETE FROM retained")
        db.executemany("INSERT OR IGNORE INTO retained VALUES (?)", ((key,) for key in keys))
        yield
