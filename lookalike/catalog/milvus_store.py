"""An index version's vectors in a Milvus server: for the catalogue that outgrows one machine.

One collection per version, named after it, one row per photo: its label (the primary key, the
same id Faiss uses), its category (the partition key), product and variant group, every
filterable column of products.csv, and the vector. A search runs inside the engine with `where`
turned into a Milvus boolean expression: string values are escaped into literals and numbers
written as numbers, never pasted, and each column is addressed by a field name of our own
(`c0_text`, ...), so nothing a shopper types becomes expression syntax.

A column's filter means what `lookalike.catalog.filters` says it means (numbers compare as
numbers, other cells as text, an empty cell never matches), so the two stores agree; each column
is stored three ways for that: its text, its number, and whether it is one.

Publishing is atomic from the services' point of view: `publish` writes, indexes and loads the
whole collection before the indexing job switches `current`; a build that fails drops it.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc
import numpy as np

from lookalike.catalog.index import VectorOpener
from lookalike.catalog.manifest import CatalogItem, Manifest
from lookalike.catalog.vector_store import CategoryVectors, Restriction, VectorStoreKind, VectorStoreRecord
from lookalike.errors import IndexMismatch, VectorStoreUnavailable
from lookalike.settings import VectorStoreSettings
from lookalike.where import Filter, as_number

# pymilvus is imported where it is first used: with pandas it holds about 90 MB, which a Faiss index
# (the similarity service's, the indexing job's and its torch steps') never needs.
if TYPE_CHECKING:
    from pymilvus import MilvusClient

log = logging.getLogger("lookalike.milvus")

LABEL, CATEGORY, PRODUCT, GROUP, VECTOR = "label", "category", "product_id", "group_id", "vector"
MAX_TEXT = 4096  # VARCHAR length of a column's cell; longer cells are cut (they are never filter values)
MAX_TOP_K = 16_384  # Milvus refuses a larger limit
INSERT_BATCH = 1_000
BULK_TIMEOUT_S = 120  # a whole collection's work (publish, load, drop): the job's or a start-up's, never a shopper's
INDEX_TYPES = {"FLAT": {}, "HNSW": {"M": 32, "efConstruction": 200}, "IVF_FLAT": {"nlist": 1024}}
SEARCH_PARAMETERS = {"FLAT": {}, "HNSW": {"ef": 64}, "IVF_FLAT": {"nprobe": 16}}
OPERATORS = {"=": "==", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}


def collection_name(version: str) -> str:
    """`lookalike_` and the version, in the letters, digits and underscores Milvus allows."""
    return "lookalike_" + re.sub(r"[^0-9A-Za-z]", "_", version)


def string_literal(value: str) -> str:
    """`value` as a double-quoted Milvus string literal: whatever it holds, it stays one string."""
    out = []
    for c in value:
        if c in '\\"':
            out.append("\\" + c)
        elif c.isprintable():
            out.append(c)
        else:
            out.append(f"\\u{ord(c):04x}" if ord(c) <= 0xFFFF else f"\\U{ord(c):08x}")
    return '"' + "".join(out) + '"'


def number_literal(value: float) -> str:
    if not math.isfinite(value):
        raise ValueError(f"{value} is not a finite number")
    return repr(float(value))


@dataclass(frozen=True)
class ColumnFields:
    """The three fields each filterable column is stored as, named by position, never by the column's text."""

    text: str
    number: str
    is_number: str

    @classmethod
    def of(cls, columns: Sequence[str]) -> dict[str, ColumnFields]:
        return {name: cls(f"c{i}_text", f"c{i}_number", f"c{i}_is_number") for i, name in enumerate(columns)}


def filter_expression(f: Filter, fields: ColumnFields) -> str:
    """One `where` filter as a Milvus expression, meaning what `ColumnTable.mask` means by it."""
    op = OPERATORS[f.op]
    present = f"{fields.text} != \"\""
    if f.number is None:
        return f"({fields.text} {op} {string_literal(f.value)} and {present})"
    as_number_ = f"({fields.is_number} == true and {fields.number} {op} {number_literal(f.number)})"
    if f.op in ("=", "!="):
        as_text = f"({fields.is_number} == false and {fields.text} {op} {string_literal(f.value)})"
        return f"(({as_number_} or {as_text}) and {present})"
    return f"({as_number_} and {present})"


def restriction_expression(category: str, restriction: Restriction, fields: Mapping[str, ColumnFields]) -> str:
    parts = [f"{CATEGORY} == {string_literal(category)}"]
    parts += [filter_expression(f, fields[f.column]) for f in restriction.filters]
    if restriction.excluded_groups:
        parts.append(f"{GROUP} not in [{', '.join(map(string_literal, sorted(restriction.excluded_groups)))}]")
    if restriction.labels is not None:
        parts.append(f"{LABEL} in [{', '.join(str(int(label)) for label in restriction.labels)}]")
    return " and ".join(parts)


class MilvusConnection:
    """Where the Milvus server is and how to sign in; the client is made on first use, then kept."""

    def __init__(self, uri: str, *, token: str = "", user: str = "", password: str = "", timeout_s: int = 3) -> None:
        # Whole seconds: pymilvus bounds its retries by a call's timeout only when that is an int; given a float,
        # it retries 75 times with back-off, minutes against a dead server (milvus-io/pymilvus#1848).
        self.uri, self.timeout_s = uri, int(timeout_s)
        self._credentials = {"token": token, "user": user, "password": password}
        self._client: MilvusClient | None = None

    @property
    def client(self) -> MilvusClient:
        if self._client is None:
            from pymilvus import MilvusClient

            with unavailable_as_503(self.uri):
                self._client = MilvusClient(uri=self.uri, timeout=self.timeout_s, **self._credentials)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    @contextmanager
    def calls(self) -> Iterator[None]:
        """Milvus calls: a failure is the clear 503, and the client is made anew next time, since pymilvus's
        client is unusable once its connection failed (it comes back by itself when the server does)."""
        try:
            with unavailable_as_503(self.uri):
                yield
        except VectorStoreUnavailable:
            self._client = None  # not closed: closing a client whose server died can wait on its channel
            raise

    def check(self) -> str | None:
        """None when the server answers, else why not: for `/readyz`."""
        try:
            with self.calls():
                self.client.get_server_version(timeout=min(self.timeout_s, 2))
        except VectorStoreUnavailable as exc:
            return exc.message
        return None


@contextmanager
def unavailable_as_503(uri: str) -> Iterator[None]:
    """A server that is down, slow or refusing becomes the similarity service's clear 503."""
    from pymilvus import MilvusException

    try:
        yield
    except MilvusException as exc:
        raise VectorStoreUnavailable(f"The vector store (Milvus at {uri}) did not answer: {exc.message}") from exc
    except grpc.RpcError as exc:  # pymilvus passes some codes through unwrapped: a deadline, for one
        raise VectorStoreUnavailable(f"The vector store (Milvus at {uri}) did not answer: {exc}") from exc


@dataclass(frozen=True)
class MilvusCategory:
    """One category's photos in a version's collection: `CategoryVectors` over Milvus."""

    connection: MilvusConnection
    collection: str
    category: str
    size: int
    dimension: int
    fields: Mapping[str, ColumnFields]
    search_parameters: Mapping[str, int]

    @property
    def filters_by_label(self) -> bool:
        """It filters by its own expression from the restriction's rules, so nobody works out the labels allowed."""
        return False

    @property
    def dim(self) -> int:
        return self.dimension

    def __len__(self) -> int:
        return self.size

    def nearest(self, queries: np.ndarray, k: int, restriction: Restriction) -> list[tuple[int, float]]:
        k = min(k, self.size, MAX_TOP_K)
        if k <= 0 or (restriction.labels is not None and len(restriction.labels) == 0):
            return []
        rows = self._loaded(lambda client: client.search(
            self.collection, data=np.asarray(queries, dtype=np.float32).tolist(), limit=k,
            filter=restriction_expression(self.category, restriction, self.fields),
            search_params={"metric_type": "IP", "params": dict(self.search_parameters)},
            anns_field=VECTOR, timeout=self.connection.timeout_s))
        best: dict[int, float] = {}
        for row in rows:
            for hit in row:
                label, score = int(hit["id"]), float(hit["distance"])
                if best.get(label, -math.inf) < score:
                    best[label] = score
        return sorted(best.items(), key=lambda pair: pair[1], reverse=True)[:k]

    def _loaded(self, call: Callable[[MilvusClient], Any]) -> Any:
        """`call`, with the collection loaded again first where a restarted server has not (yet) done so."""
        from pymilvus import MilvusException

        with self.connection.calls():
            client = self.connection.client
            try:
                return call(client)
            except MilvusException as exc:
                if "not loaded" not in str(exc.message):
                    raise
                log.warning("Milvus collection %s was not loaded (a restarted server?); loading it", self.collection)
                client.load_collection(self.collection, timeout=BULK_TIMEOUT_S)
                return call(client)

    def vector(self, label: int) -> np.ndarray:
        rows = self._loaded(lambda client: client.query(self.collection, filter=f"{LABEL} == {int(label)}",
                                                        output_fields=[VECTOR], timeout=self.connection.timeout_s))
        if not rows:
            raise IndexMismatch(f"Photo {label} is missing from Milvus collection {self.collection}: re-index.")
        return np.asarray(rows[0][VECTOR], dtype=np.float32)


def columns_of(items: Sequence[CatalogItem]) -> list[str]:
    """The filterable columns, in the order `ColumnTable` sorts them."""
    return sorted({name for item in items for name in item.extra})


def connect(settings: VectorStoreSettings) -> MilvusConnection:
    if not settings.milvus_uri:
        raise VectorStoreUnavailable("VECTOR_STORE=milvus needs MILVUS_URI, the Milvus server to use "
                                     "(`make run` starts a local one when it is unset).")
    token, password = (secret.get_secret_value() if secret else "" for secret in (settings.milvus_token,
                                                                                   settings.milvus_password))
    return MilvusConnection(settings.milvus_uri, token=token, user=settings.milvus_user, password=password,
                            timeout_s=settings.milvus_timeout_s)


def opener(connection: MilvusConnection) -> VectorOpener:
    """`CatalogIndex.load`'s way to this server's collections."""
    return lambda manifest, version_dir, items: open_milvus(connection, manifest, items)


def open_milvus(connection: MilvusConnection, manifest: Manifest,
                items: Sequence[CatalogItem]) -> dict[str, CategoryVectors]:
    """The version's collection, per category; refused with a clear reason if it is not there."""
    store = manifest.vector_store
    if store is None or store.kind != VectorStoreKind.MILVUS or store.collection is None:
        raise IndexMismatch(f"Index version {manifest.version} keeps its vectors in Faiss files, but this service "
                            "is set to VECTOR_STORE=milvus: re-index with VECTOR_STORE=milvus, or serve it with faiss.")
    with connection.calls():
        client = connection.client
        if not client.has_collection(store.collection, timeout=connection.timeout_s):
            raise IndexMismatch(f"Milvus at {connection.uri} has no collection {store.collection} for index version "
                                f"{manifest.version}: it was dropped, or this is another Milvus. Re-index.")
        client.load_collection(store.collection, timeout=BULK_TIMEOUT_S)
    fields = ColumnFields.of(columns_of(items))
    return {c.name: MilvusCategory(connection, store.collection, c.name, c.items, manifest.embedding_dim, fields,
                                   store.search_parameters) for c in manifest.categories}


def publish(connection: MilvusConnection, version: str, items: Sequence[CatalogItem], vectors: np.ndarray,
            index_type: str = "FLAT") -> VectorStoreRecord:
    """Write the version's collection whole, index it and load it; drop it again if any step fails."""
    index_type = index_type.upper()
    if index_type not in INDEX_TYPES:
        raise ValueError(f"MILVUS_INDEX_TYPE must be one of {', '.join(INDEX_TYPES)}, not {index_type!r}")
    name = collection_name(version)
    columns = columns_of(items)
    fields = ColumnFields.of(columns)
    from pymilvus import DataType, MilvusClient

    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field(LABEL, DataType.INT64, is_primary=True)
    schema.add_field(CATEGORY, DataType.VARCHAR, max_length=MAX_TEXT, is_partition_key=True)
    schema.add_field(PRODUCT, DataType.VARCHAR, max_length=MAX_TEXT)
    schema.add_field(GROUP, DataType.VARCHAR, max_length=MAX_TEXT)
    for f in fields.values():
        schema.add_field(f.text, DataType.VARCHAR, max_length=MAX_TEXT)
        schema.add_field(f.number, DataType.DOUBLE)
        schema.add_field(f.is_number, DataType.BOOL)
    schema.add_field(VECTOR, DataType.FLOAT_VECTOR, dim=int(vectors.shape[1]))
    index = MilvusClient.prepare_index_params()
    index.add_index(VECTOR, index_type=index_type, metric_type="IP", params=INDEX_TYPES[index_type])
    try:
        with connection.calls():
            client = connection.client
            client.create_collection(name, schema=schema, index_params=index, timeout=BULK_TIMEOUT_S)
            for start in range(0, len(items), INSERT_BATCH):
                batch = items[start:start + INSERT_BATCH]
                client.insert(name, [row(item, vectors[start + n], fields) for n, item in enumerate(batch)],
                              timeout=BULK_TIMEOUT_S)
            client.flush(name, timeout=BULK_TIMEOUT_S)
            client.load_collection(name, timeout=BULK_TIMEOUT_S)
    except BaseException:
        drop(connection, name)
        raise
    log.info("published %d vectors to Milvus collection %s (%s)", len(items), name, index_type)
    return VectorStoreRecord(kind=VectorStoreKind.MILVUS, collection=name, index_type=index_type,
                             index_parameters=INDEX_TYPES[index_type], search_parameters=SEARCH_PARAMETERS[index_type])


def row(item: CatalogItem, vector: np.ndarray, fields: Mapping[str, ColumnFields]) -> dict[str, Any]:
    values: dict[str, Any] = {LABEL: item.label, CATEGORY: item.category, PRODUCT: item.id[:MAX_TEXT],
                              GROUP: item.group[:MAX_TEXT], VECTOR: np.asarray(vector, dtype=np.float32).tolist()}
    for column, f in fields.items():
        cell = item.extra.get(column, "")
        number = as_number(cell) if cell else None
        values[f.text] = cell[:MAX_TEXT]
        values[f.number] = number if number is not None else 0.0
        values[f.is_number] = number is not None
    return values


def drop(connection: MilvusConnection, name: str) -> bool:
    """Drop a collection if it is there (a failed build's, or a pruned version's); False if Milvus can't be reached."""
    try:
        with connection.calls():
            client = connection.client
            if client.has_collection(name, timeout=connection.timeout_s):
                client.drop_collection(name, timeout=BULK_TIMEOUT_S)
                log.info("dropped Milvus collection %s", name)
    except VectorStoreUnavailable as exc:
        log.warning("could not drop Milvus collection %s: %s", name, exc)
        return False
    return True


def drop_version(connection: MilvusConnection, manifest: Manifest) -> None:
    """Drop the collection of a version being pruned, if it has one."""
    store = manifest.vector_store
    if store is not None and store.kind == VectorStoreKind.MILVUS and store.collection:
        drop(connection, store.collection)
