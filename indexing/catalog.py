"""What is in a catalogue folder: categories, images, and product rows from `products.csv`.

    <catalog>/<category>/<image>     one folder per category; the folder name is the category
    <catalog>/products.csv           optional: id, category, name, file, and any extra columns

A product is an `id`: rows that share one are several photos of that product, and its name and
other columns come from its first row. An optional `item_group_id` column (as in a Google
Merchant Center feed) groups a product's variants, e.g. its colours. Without a row, a photo is
a product of its own.

Problems are collected as `Skipped` entries with reasons, never raised: one odd file must
not stop a store's re-index. A photo row whose columns disagree with its product's first row
is indexed all the same, and noted in `disagreements`.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".heic", ".heif"}
CATEGORY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
PRODUCTS_CSV = "products.csv"
REQUIRED_COLUMNS = ("id", "category", "name", "file")
GROUP_COLUMN = "item_group_id"
STORE_CATALOG = Path("reference_images")
DEMO_CATALOG = Path("../shared/furniture/catalog")


@dataclass(frozen=True)
class Entry:
    id: str
    category: str
    name: str
    file: str  # relative to the catalogue folder, with forward slashes
    extra: dict[str, str] = field(default_factory=dict)
    group: str | None = None  # item_group_id: the product's variants share it


@dataclass(frozen=True)
class Skipped:
    file: str
    reason: str


@dataclass
class CatalogScan:
    root: Path
    entries: list[Entry]
    skipped: list[Skipped]
    disagreements: list[Skipped] = field(default_factory=list)

    @property
    def categories(self) -> list[str]:
        return sorted({e.category for e in self.entries})


def derived_id(relative: str) -> str:
    """An id for an image without a products.csv row: its path, made URL-safe."""
    stem = relative.rsplit(".", 1)[0]
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", stem.replace("/", "-")).strip("-")


def derived_name(relative: str) -> str:
    stem = Path(relative).stem
    return re.sub(r"[-_]+", " ", stem).strip().capitalize() or stem


def valid_id(item_id: str) -> bool:
    return 0 < len(item_id) <= 200 and "/" not in item_id and item_id.isprintable()


def read_products(path: Path, skipped: list[Skipped]) -> dict[str, dict[str, str]]:
    """products.csv rows by `file`; bad rows are reported in `skipped`."""
    rows: dict[str, dict[str, str]] = {}
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            skipped.append(Skipped(PRODUCTS_CSV, f"ignored: missing column(s) {', '.join(missing)}"))
            return rows
        for line, row in enumerate(reader, start=2):
            file = (row.get("file") or "").strip().replace("\\", "/")
            if not file:
                skipped.append(Skipped(f"{PRODUCTS_CSV}:{line}", "row has no file"))
                continue
            rows[file] = {k: (v or "").strip() for k, v in row.items() if k is not None}
    return rows


def scan_catalog(root: Path) -> CatalogScan:
    root = Path(root)
    skipped: list[Skipped] = []
    disagreements: list[Skipped] = []
    products = read_products(root / PRODUCTS_CSV, skipped) if (root / PRODUCTS_CSV).is_file() else {}
    entries: list[Entry] = []
    first_of: dict[str, Entry] = {}  # a product's first photo, which gives its name and columns
    for child in sorted(root.iterdir()) if root.is_dir() else []:
        if child.name.startswith("."):
            continue
        if child.is_file():
            if child.name not in (PRODUCTS_CSV, "README.md"):
                skipped.append(Skipped(child.name, "belongs to no category: put images in a category folder"))
            continue
        if not CATEGORY_NAME.match(child.name):
            skipped.append(Skipped(child.name + "/", "folder name is not a usable category (letters, digits, - and _)"))
            continue
        for path in sorted(p for p in child.rglob("*") if p.is_file()):
            relative = path.relative_to(root).as_posix()
            if any(part.startswith(".") for part in path.relative_to(root).parts):
                continue
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                skipped.append(Skipped(relative, "not an image file type"))
                continue
            row = products.pop(relative, None)
            item_id = (row or {}).get("id") or derived_id(relative)
            if not valid_id(item_id):
                skipped.append(Skipped(relative, f"products.csv id {item_id!r} is not usable; using one from the path"))
                item_id = derived_id(relative)
            extra = {k: v for k, v in (row or {}).items() if k not in REQUIRED_COLUMNS and k != GROUP_COLUMN and v}
            entry = Entry(item_id, child.name, (row or {}).get("name") or derived_name(relative), relative, extra,
                          (row or {}).get(GROUP_COLUMN) or None)
            first = first_of.get(item_id)
            if first is None:
                first_of[item_id] = entry
                entries.append(entry)
                continue
            if first.category != entry.category:
                skipped.append(Skipped(relative, f"id {item_id!r} is a {first.category} ({first.file}); "
                                                 f"a product's photos share one category folder"))
                continue
            differing = _differing_columns(first, entry) if row else []
            if differing:
                disagreements.append(Skipped(relative, f"{', '.join(differing)} differ from {first.file}, the first "
                                                       f"photo of {item_id!r}; its values are used"))
            entries.append(Entry(item_id, first.category, first.name, relative, first.extra, first.group))
    for file in products:
        skipped.append(Skipped(file, "listed in products.csv but the file does not exist"))
    return CatalogScan(root, entries, skipped, disagreements)


def _differing_columns(first: Entry, other: Entry) -> list[str]:
    """The columns of a further photo's row that disagree with the product's first row."""
    differing = ["name"] if other.name != first.name else []
    if other.group != first.group:
        differing.append(GROUP_COLUMN)
    return differing + sorted(k for k in set(first.extra) | set(other.extra) if first.extra.get(k) != other.extra.get(k))


def default_catalog(configured: Path | None) -> tuple[Path, str | None]:
    """`configured` ($CATALOG) if set; else reference_images/, or the demo catalogue beside the repo while that is empty.

    Returns the folder and, when the demo catalogue was chosen, a sentence saying so.
    """
    if configured is not None:
        return configured, None
    if scan_catalog(STORE_CATALOG).entries or not DEMO_CATALOG.is_dir():
        return STORE_CATALOG, None
    return DEMO_CATALOG, f"{STORE_CATALOG}/ has no images yet, so the demo catalogue {DEMO_CATALOG} is used."
