"""The similarity service's routes: embedding in, nearest catalogue items out.

The routes are plain functions, so FastAPI runs them on its worker threads: a Faiss search or an
SQLite FTS5 query (both release the GIL) never holds up `/readyz` or another request. Each takes
the served `CatalogIndex` once (`require()`) and only reads it; a reload swaps in a whole new one,
so a request in flight finishes on the version it started with. The text index's one SQLite
connection is read-only and immutable, opened with check_same_thread=False; SQLite itself is built
serialised (sqlite3.threadsafety 3), so threads may share it.

OpenMP's thread count is per thread: `omp_set_num_threads` in the lifespan reaches only the event
loop's thread, and a worker thread would start a team of one thread per core. So each route that
searches with Faiss first sets SIMILARITY_FAISS_THREADS for the thread it runs on.
"""

from __future__ import annotations

from typing import Annotated

import faiss
from fastapi import APIRouter, Query
from fastapi.responses import FileResponse

from lookalike.catalog.index import CatalogIndex
from lookalike.catalog.manifest import CatalogItem
from lookalike.catalog.refine import RocchioWeights, rocchio
from lookalike.contracts import (
    MAX_EXAMPLES,
    MAX_K,
    CatalogColumns,
    SearchRequest,
    SearchResponse,
    TextSearchResponse,
)
from lookalike.errors import VersionSkew
from lookalike.served_version import ServedVersion
from lookalike.service import error_responses, from_state

ERRORS = error_responses(404, 422, 503)
SEARCH_ERRORS = error_responses(404, 409, 422, 503)
Serving = ServedVersion[CatalogIndex]
ServingDep = Annotated[Serving, from_state("serving", ServedVersion)]
Weights = Annotated[RocchioWeights, from_state("rocchio_weights", RocchioWeights)]
FaissThreads = Annotated[int, from_state("faiss_threads", int)]
Where = Annotated[list[str] | None, Query(description="Filters `column<op>value`; see /v1/columns.")]
Marks = Annotated[list[str] | None, Query(max_length=MAX_EXAMPLES, description="Product ids, at most 20.")]

router = APIRouter()


@router.post("/v1/search", response_model=SearchResponse, responses=SEARCH_ERRORS)
def search(body: SearchRequest, serving: ServingDep, weights: Weights, threads: FaissThreads) -> SearchResponse:
    """The k product groups of `category` nearest to the embedding, by cosine similarity, that pass `where`.

    With `like` or `unlike`, the embedding first moves by Rocchio's rule, and unliked products are left out.
    """
    faiss.omp_set_num_threads(threads)
    catalog = serving.require()
    if body.index_version is not None and body.index_version != catalog.version:
        raise VersionSkew(f"This search started on index version {body.index_version}, and this service serves "
                          f"{catalog.version}: the services are between reloads. Search again.")
    vector = catalog.query_vector(body.vector())  # into the version's reduced space, if it has one
    if body.like or body.unlike:
        vector = rocchio(vector, catalog.product_vectors(body.like), catalog.product_vectors(body.unlike), weights)
    hits = catalog.search(body.category, vector, body.k, frozenset(body.exclude_ids) | frozenset(body.unlike),
                          exclude_groups=frozenset(body.exclude_groups), where=body.where,
                          min_score=body.min_score, q=body.q)
    return SearchResponse(category=body.category, hits=hits, index_version=catalog.version)


@router.get("/v1/columns", response_model=CatalogColumns, responses=ERRORS)
def columns(serving: ServingDep) -> CatalogColumns:
    """The products.csv columns that `where` filters on, with their kind and range or common values."""
    catalog = serving.require()
    return CatalogColumns(columns=catalog.filterable_columns(), index_version=catalog.version)


@router.get("/v1/search/text", response_model=TextSearchResponse, responses=ERRORS)
def search_text(serving: ServingDep, weights: Weights, threads: FaissThreads,
                q: str = Query("", description="Words to search for."),
                k: int = Query(10, ge=1, le=MAX_K), category: str | None = None,
                where: Where = None, like: Marks = None, unlike: Marks = None) -> TextSearchResponse:
    """The k products best matching the words (bm25 over names, categories, text columns, tags), passing `where`.

    With `like` or `unlike`, the words' top products' mean vector moves by Rocchio's rule and the
    vectors rank the results (`refined`); unliked products are left out.
    """
    faiss.omp_set_num_threads(threads)
    catalog = serving.require()
    if like or unlike:
        hits = catalog.refine_text(q, k, like or [], unlike or [], weights, category=category or None, where=where)
    else:
        hits = catalog.text_search(q, k, category or None, where)
    return TextSearchResponse(query=q, category=category or None, hits=hits, index_version=catalog.version,
                              refined=bool(like or unlike))


@router.get("/v1/items/{item_id}", response_model=CatalogItem, responses=ERRORS)
def item(item_id: str, serving: ServingDep) -> CatalogItem:
    return serving.require().item(item_id)


@router.get("/v1/items/{item_id}/similar", response_model=SearchResponse, responses=ERRORS)
def similar(item_id: str, serving: ServingDep, threads: FaissThreads, k: int = Query(10, ge=1, le=MAX_K),
            where: Where = None, min_score: float = Query(0.0, ge=0, le=1)) -> SearchResponse:
    """More like this product: all its photos as the query, its variant group left out."""
    faiss.omp_set_num_threads(threads)
    catalog = serving.require()
    hits = catalog.similar_to(item_id, k, where=where, min_score=min_score)
    return SearchResponse(category=catalog.item(item_id).category, hits=hits, index_version=catalog.version)


@router.get("/v1/items/{item_id}/image", response_class=FileResponse, responses=ERRORS)
def image(item_id: str, serving: ServingDep, photo: int = Query(0, ge=0, le=10_000)) -> FileResponse:
    """A product photo's thumbnail (its first by default). Only catalogue photos are served, by id, never by path."""
    path = serving.require().thumbnail(item_id, photo)
    return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "public, max-age=3600"})
