"""Words in, catalogue items out: one SQLite FTS5 index per index version, ranked by bm25.

The indexing job writes `text.sqlite` with `write_text_index`; the similarity service opens it
read-only with the version (`TextIndex.load`). One FTS5 row per item, its rowid the item's Faiss
label, one column per searched field: the name, the category, each text column of products.csv,
and the photo's ImageNet tags. Each field has a bm25 weight, the name's highest.

A search's words are quoted one by one as FTS5 strings, so nothing typed is FTS5 syntax. Each word
(or synonym phrase) is one group of alternatives; all groups must match, and the last word also
matches as a prefix, so `poan` finds POÄNG while it is still being typed.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lookalike.catalog.layout import SYNONYMS, TEXT_INDEX
from lookalike.catalog.manifest import CatalogItem
from lookalike.catalog.synonyms import Phrase, Synonyms
from lookalike.text_query import STOP_WORDS, query_words

NAME, CATEGORY, TAGS = "name", "category", "imagenet_tags"
DEFAULT_WEIGHTS = {NAME: 10.0, CATEGORY: 5.0, TAGS: 1.0}
OTHER_COLUMN_WEIGHT = 2.0
# products.csv columns that are not words about the product; a store may name others.
DEFAULT_EXCLUDED = frozenset({"url", "link", "license", "source", "item_group_id", "image", "image_url", "sku", "gtin",
                              "availability", "currency"})
TOKENIZER = "unicode61 remove_diacritics 2"
PREFIX_MIN_CHARS = 2  # a one-letter prefix would match most of the catalogue


@dataclass(frozen=True)
class TextField:
    name: str
    weight: float


def _numeric(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def text_fields(items: Sequence[CatalogItem], weights: Mapping[str, float] | None = None,
                excluded: frozenset[str] = DEFAULT_EXCLUDED) -> list[TextField]:
    """The searched fields: name, category, every products.csv column holding words, and the tags.

    A column whose cells are all numbers (a price, a width) is left out; so is one in `excluded`
    or weighted 0.
    """
    chosen = {**DEFAULT_WEIGHTS, **(weights or {})}
    columns: dict[str, bool] = {}
    for item in items:
        for column, value in item.extra.items():
            columns[column] = columns.get(column, False) or not _numeric(value)
    names = [NAME, CATEGORY, *(c for c, wordy in columns.items() if wordy and c not in excluded and c not in chosen),
             *(c for c in chosen if c in columns and c not in excluded), TAGS]
    fields = [TextField(n, float(chosen.get(n, OTHER_COLUMN_WEIGHT))) for n in dict.fromkeys(names)]
    return [f for f in fields if f.weight > 0]


def field_value(item: CatalogItem, field: str, tags: Mapping[int, list[tuple[str, float]]]) -> str:
    """One searched field's words for an item, as the index holds them (and the sentence model reads them)."""
    if field == NAME:
        return item.name
    if field == CATEGORY:
        return item.category
    if field == TAGS:
        return ", ".join(tag for tag, _ in tags.get(item.label, []))
    return item.extra.get(field, "")


def write_text_index(path: Path, items: Sequence[CatalogItem], fields: Sequence[TextField],
                     tags: Mapping[int, list[tuple[str, float]]] | None = None) -> None:
    """Write the whole index into a new file at `path` (inside a build folder, published with it)."""
    tags = tags or {}
    columns = ", ".join(f"f{i}" for i in range(len(fields)))
    db = sqlite3.connect(path)
    try:
        with db:
            db.execute(f"CREATE VIRTUAL TABLE items USING fts5({columns}, category_key UNINDEXED, "
                       f"tokenize='{TOKENIZER}', prefix='2 3')")
            db.execute("CREATE TABLE fields (position INTEGER PRIMARY KEY, name TEXT NOT NULL, weight REAL NOT NULL)")
            db.execute("CREATE TABLE imagenet_tags (label INTEGER, rank INTEGER, tag TEXT, probability REAL, "
                       "PRIMARY KEY (label, rank))")
            db.executemany("INSERT INTO fields VALUES (?, ?, ?)", ((i, f.name, f.weight) for i, f in enumerate(fields)))
            placeholders = ", ".join("?" for _ in range(len(fields) + 2))
            db.executemany(f"INSERT INTO items (rowid, {columns}, category_key) VALUES ({placeholders})",
                           ((item.label, *(field_value(item, f.name, tags) for f in fields), item.category)
                            for item in items))
            db.executemany("INSERT INTO imagenet_tags VALUES (?, ?, ?, ?)",
                           ((label, rank, tag, p) for label, found in tags.items() for rank, (tag, p) in enumerate(found)))
            db.execute("INSERT INTO items(items) VALUES ('optimize')")
    finally:
        db.close()


def _fts_string(phrase: Phrase, prefix: bool = False) -> str:
    """An FTS5 string: double quotes, any `"` doubled (words() leaves none), `*` only where we put it."""
    quoted = '"' + " ".join(phrase).replace('"', '""') + '"'
    return quoted + " *" if prefix else quoted


@dataclass(frozen=True)
class Match:
    label: int
    score: float
    matched: list[str]


@dataclass(frozen=True)
class TextQuery:
    """A search's words as an FTS5 expression: one group of alternatives per word or synonym phrase."""

    groups: list[list[str]]

    @property
    def expression(self) -> str:
        return " AND ".join("(" + " OR ".join(group) + ")" for group in self.groups)


class TextIndex:
    """One version's text index, read-only; shared by the requests of that version."""

    def __init__(self, db: sqlite3.Connection, fields: list[TextField], synonyms: Synonyms) -> None:
        self.db = db
        self.fields = fields
        self.synonyms = synonyms
        weights = ", ".join(repr(f.weight) for f in fields)
        self._rank = f"bm25(items, {weights}, 0.0)"

    @classmethod
    def load(cls, version_dir: Path) -> TextIndex | None:
        """None for a version built before text indexes existed; the service then says to re-index."""
        path = version_dir / TEXT_INDEX
        if not path.is_file():
            return None
        # immutable: the file never changes once published, so SQLite takes no locks. Searches run on the
        # service's worker threads and the connection is made on the reload thread, hence check_same_thread;
        # Python's SQLite is built serialized (sqlite3.threadsafety 3), so threads may share the connection.
        db = sqlite3.connect(f"{path.as_uri()}?mode=ro&immutable=1", uri=True, check_same_thread=False)
        rows = db.execute("SELECT name, weight FROM fields ORDER BY position")
        fields = [TextField(name, weight) for name, weight in rows]
        return cls(db, fields, Synonyms.load(version_dir / SYNONYMS))

    def parse(self, q: str | None) -> TextQuery:
        """The words, synonyms applied, stop words dropped; BadTextQuery when none is left."""
        groups = [(typed, alternatives) for typed, alternatives in self.synonyms.expand(query_words(q))
                  if not (len(typed) == 1 and typed[0] in STOP_WORDS)]
        last = len(groups) - 1
        return TextQuery([
            sorted(_fts_string(phrase, prefix=at == last and phrase == typed and len(phrase[-1]) >= PREFIX_MIN_CHARS)
                   for phrase in alternatives)
            for at, (typed, alternatives) in enumerate(groups)])

    def _column(self, field: str) -> str:
        return f"f{[f.name for f in self.fields].index(field)}"

    def search(self, query: TextQuery, k: int, category: str | None = None) -> list[Match]:
        """The k best items for the words, best first; `matched` names the fields that hold any of them."""
        where, params = "items MATCH ?", [query.expression]
        if category is not None:
            where += " AND category_key = ?"
            params.append(category)
        rows = self.db.execute(f"SELECT rowid, {self._rank} AS rank FROM items WHERE {where} ORDER BY rank LIMIT ?",
                               (*params, k)).fetchall()
        matched = self._matched_fields(query, [label for label, _ in rows])
        # bm25 is negative, better the lower; -bm25 / (1 - bm25) keeps the order and lies in 0-1.
        return [Match(label, -rank / (1.0 - rank), matched.get(label, [])) for label, rank in rows]

    def _matched_fields(self, query: TextQuery, labels: list[int]) -> dict[int, list[str]]:
        if not labels:
            return {}
        anything = "(" + " OR ".join(alt for group in query.groups for alt in group) + ")"
        found: dict[int, list[str]] = {}
        marks = ", ".join("?" for _ in labels)
        for field in self.fields:
            rows = self.db.execute(f"SELECT rowid FROM items WHERE items MATCH ? AND rowid IN ({marks})",
                                   (f"{{{self._column(field.name)}}} : {anything}", *labels))
            for (label,) in rows:
                found.setdefault(label, []).append(field.name)
        return found

    def matching_labels(self, query: TextQuery, category: str | None = None) -> np.ndarray:
        """Every item matching the words, as Faiss labels: what a photo search narrowed by words may return."""
        sql, params = "SELECT rowid FROM items WHERE items MATCH ?", [query.expression]
        if category is not None:
            sql += " AND category_key = ?"
            params.append(category)
        return np.fromiter((label for (label,) in self.db.execute(sql, params)), dtype=np.int64)

    def tags(self, label: int) -> list[tuple[str, float]]:
        """A photo's ImageNet tags with their probabilities, most likely first (none with random weights)."""
        return [(tag, p) for tag, p in self.db.execute(
            "SELECT tag, probability FROM imagenet_tags WHERE label = ? ORDER BY rank", (label,))]

