"""A query set for the evaluation: photos with the answers a person expects.

    <queries>/labels.csv    file, category, and optionally product_id
    <queries>/<file>        the photos, any layout; `file` is relative to the folder

`product_id` names the catalogue item(s) the photo shows; several ids separated by `|` all
count as a hit. Left empty, the query counts for category precision only.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from lookalike.errors import QuerySetError

LABELS_CSV = "labels.csv"
REQUIRED_COLUMNS = ("file", "category")



@dataclass(frozen=True)
class Query:
    file: str
    category: str
    product_ids: frozenset[str]


def read_query_set(folder: Path) -> list[Query]:
    labels = Path(folder) / LABELS_CSV
    if not labels.is_file():
        raise QuerySetError(f"{labels} does not exist. A query set is a folder with a {LABELS_CSV} "
                            "of file, category and optionally product_id.")
    with open(labels, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise QuerySetError(f"{labels} lacks the column(s) {', '.join(missing)}; it needs file and category.")
        queries = []
        for line, row in enumerate(reader, start=2):
            file, category = (row.get("file") or "").strip(), (row.get("category") or "").strip()
            if not file or not category:
                raise QuerySetError(f"{labels}:{line} needs both a file and a category.")
            ids = frozenset(i.strip() for i in (row.get("product_id") or "").split("|") if i.strip())
            queries.append(Query(file, category, ids))
    if not queries:
        raise QuerySetError(f"{labels} lists no queries.")
    return queries
