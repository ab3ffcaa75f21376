"""Products and variant groups: which photos make a product, and which products make a group.

Every photo is searched, but a result is a product group: photos that share an `id` are one
product, and products that share an `item_group_id` are variants of one group.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lookalike.catalog.manifest import CatalogItem


@dataclass(frozen=True)
class Products:
    """Which photos make which product, and which products make which variant group."""

    photos: dict[str, list[CatalogItem]]  # product id -> its photos, in catalogue order
    groups: dict[str, list[str]]  # group -> its product ids
    labels_by_category: dict[str, np.ndarray]  # every photo's label, per category
    group_of: np.ndarray  # label -> group number
    group_number: dict[str, int]  # group -> its number
    photo_number: dict[int, int]  # label -> its place among its product's photos

    @classmethod
    def of(cls, items: list[CatalogItem]) -> Products:
        photos: dict[str, list[CatalogItem]] = {}
        groups: dict[str, list[str]] = {}
        for item in items:
            photos.setdefault(item.id, []).append(item)
            members = groups.setdefault(item.group, [])
            if item.id not in members:
                members.append(item.id)
        number = {name: n for n, name in enumerate(groups)}
        group_of = np.full(max((i.label for i in items), default=-1) + 1, -1, dtype=np.int64)
        for item in items:
            group_of[item.label] = number[item.group]
        by_category: dict[str, list[int]] = {}
        for item in items:
            by_category.setdefault(item.category, []).append(item.label)
        return cls(photos, groups, {c: np.array(labels, dtype=np.int64) for c, labels in by_category.items()},
                   group_of, number, {p.label: n for ps in photos.values() for n, p in enumerate(ps)})
