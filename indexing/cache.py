"""Embeddings remembered across runs, so a re-index only runs the network on new photos.

    (sha256 of the file's bytes, model_id) -> embedding (float32) + thumbnail (JPEG)
                                             -> ImageNet tags (JSON), with real weights only

Keyed by content, not path: a renamed file reuses its embedding, a file whose bytes changed is
embedded again. `model_id` names the weights and the preprocessing but not the precision, since
bf16 and fp32 embeddings are interchangeable. SQLite in WAL mode, committed once per batch: a
run stopped at any point (Ctrl-C, kill -9, a full disk) leaves every committed batch readable,
and the next run starts where it stopped.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from lookalike.contracts import EMBEDDING_DTYPE
from lookalike.job_database import open_job_database, retaining

CACHE_FILE = "cache.sqlite"

SCHEMA = """
CREATE TABLE IF NOT EXISTS embeddings (
    sha256    TEXT NOT NULL,
    model_id  TEXT NOT NULL,
    vector    BLOB NOT NULL,
    thumbnail BLOB NOT NULL,
    PRIMARY KEY (sha256, model_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS imagenet_tags (
    sha256    TEXT NOT NULL,
    model_id  TEXT NOT NULL,
    tags      TEXT NOT NULL,
    PRIMARY KEY (sha256, model_id)
) WITHOUT ROWID;
"""
Tags = list[tuple[str, float]]


class EmbeddingCache:
    """One SQLite file under the index root; used from one thread only (the job's main thread)."""

    def __init__(self, path: Path, model_id: str) -> None:
        self.path = Path(path)
        self.model_id = model_id
        self.db = open_job_database(self.path, SCHEMA)

    def known(self) -> frozenset[str]:
        """Content hashes this model has already embedded; handed to the decode threads."""
        rows = self.db.execute("SELECT sha256 FROM embeddings WHERE model_id = ?", (self.model_id,))
        return frozenset(sha for (sha,) in rows)

    def get(self, sha256: str) -> tuple[np.ndarray, bytes] | None:
        row = self.db.execute("SELECT vector, thumbnail FROM embeddings WHERE sha256 = ? AND model_id = ?",
                              (sha256, self.model_id)).fetchone()
        if row is None:
            return None
        return np.frombuffer(row[0], dtype=EMBEDDING_DTYPE).astype(np.float32), bytes(row[1])

    def get_tags(self, sha256: str) -> Tags:
        row = self.db.execute("SELECT tags FROM imagenet_tags WHERE sha256 = ? AND model_id = ?",
                              (sha256, self.model_id)).fetchone()
        return [(tag, p) for tag, p in json.loads(row[0])] if row else []

    def put_batch(self, rows: list[tuple[str, np.ndarray, bytes]], tags: list[Tags] | None = None) -> None:
        """(sha256, vector, thumbnail) rows, and their tags if any, in one transaction: all of the batch or none."""
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany(
                "INSERT OR REPLACE INTO embeddings (sha256, model_id, vector, thumbnail) VALUES (?, ?, ?, ?)",
                [(sha, self.model_id, np.ascontiguousarray(v, dtype=EMBEDDING_DTYPE).tobytes(), thumb)
                 for sha, v, thumb in rows])
            if tags is not None:
                self.db.executemany("INSERT OR REPLACE INTO imagenet_tags (sha256, model_id, tags) VALUES (?, ?, ?)",
                                    [(sha, self.model_id, json.dumps(t)) for (sha, _, _), t in zip(rows, tags)])

    def retain(self, sha256s: set[str]) -> int:
        """Forget every embedding but this model's of `sha256s`, the photos just published.

        Run after each build, so the cache never outgrows the catalogue: photos that left it,
        and other weights' embeddings, are dropped. Returns how many rows went.
        """
        with retaining(self.db, sha256s):
            self.db.execute("DELETE FROM imagenet_tags WHERE model_id != ? OR sha256 NOT IN (SELECT key FROM retained)",
                            (self.model_id,))
            return self.db.execute(
                "DELETE FROM embeddings WHERE model_id != ? OR sha256 NOT IN (SELECT key FROM retained)",
                (self.model_id,)).rowcount

    def __len__(self) -> int:
        return self.db.execute("SELECT count(*) FROM embeddings WHERE model_id = ?", (self.model_id,)).fetchone()[0]

    def close(self) -> None:
        self.db.close()


TEXT_SCHEMA = """
CREATE TABLE IF NOT EXISTS text_vectors (
    text_sha256  TEXT NOT NULL,
    model_digest TEXT NOT NULL,
    vector       BLOB NOT NULL,
    PRIMARY KEY (text_sha256, model_digest)
) WITHOUT ROWID;
"""


class TextVectorCache:
    """The sentence model's vectors of items' texts, in the same file: a re-index embeds only changed texts.

    Keyed by the text's sha256 and the model's digest (`lookalike.catalog.text_embedding`), so an
    unchanged product reuses its vector and another model never sees this one's.
    """

    def __init__(self, path: Path, model_digest: str) -> None:
        self.model_digest = model_digest
        self.db = open_job_database(path, TEXT_SCHEMA)

    def get_many(self, text_sha256s: list[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        for at in range(0, len(text_sha256s), 500):  # SQLite's bound-parameter limit
            chunk = text_sha256s[at:at + 500]
            marks = ", ".join("?" for _ in chunk)
            rows = self.db.execute(f"SELECT text_sha256, vector FROM text_vectors WHERE model_digest = ? "
                                   f"AND text_sha256 IN ({marks})", (self.model_digest, *chunk))
            found.update((sha, np.frombuffer(blob, dtype=EMBEDDING_DTYPE).astype(np.float32)) for sha, blob in rows)
        return found

    def put_many(self, rows: list[tuple[str, np.ndarray]]) -> None:
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany("INSERT OR REPLACE INTO text_vectors VALUES (?, ?, ?)",
                                [(sha, self.model_digest, np.ascontiguousarray(v, dtype=EMBEDDING_DTYPE).tobytes())
                                 for sha, v in rows])

    def retain(self, text_sha256s: set[str]) -> int:
        """Forget every vector but this model's of these texts, those just published; how many went."""
        with retaining(self.db, text_sha256s):
            return self.db.execute("DELETE FROM text_vectors WHERE model_digest != ? OR text_sha256 NOT IN "
                                   "(SELECT key FROM retained)", (self.model_digest,)).rowcount

    def close(self) -> None:
        self.db.close()
