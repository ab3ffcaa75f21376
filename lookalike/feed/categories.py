"""Which category a feed product belongs to, from a mapping file the store edits.

    # comment
    chair: Furniture > Chairs            a path, and everything under it
    chair: Home > Furniture > Armchairs  the store's own product_type paths
    chair: 443                           a Google taxonomy numeric id, exactly

The default (default_categories.txt beside this module) maps Google's taxonomy for the demo's
five categories, by path and by numeric id.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from lookalike.errors import CategoryMappingError
from lookalike.feed.parse import FeedProduct

DEFAULT_MAPPING = "default_categories.txt"
CATEGORY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
SEPARATOR = re.compile(r"\s*>\s*")


def normalised(value: str) -> str:
    """Case and the spaces around `>` do not matter: "home>Furniture >  chairs" is "home > furniture > chairs"."""
    return SEPARATOR.sub(" > ", " ".join(value.split())).casefold()


@dataclass(frozen=True)
class CategoryMapping:
    rules: dict[str, str]  # normalised value -> category
    source: str = DEFAULT_MAPPING

    @classmethod
    def parse(cls, text: str, source: str) -> CategoryMapping:
        rules: dict[str, str] = {}
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            category, colon, value = line.partition(":")
            category, value = category.strip(), value.strip()
            if not colon or not value:
                raise CategoryMappingError(f"{source}:{number}: {raw.strip()!r} is not `category: value`, "
                                           "e.g. `chair: Furniture > Chairs`.")
            if not CATEGORY_NAME.match(category):
                raise CategoryMappingError(f"{source}:{number}: {category!r} is not a usable category name "
                                           "(letters, digits, - and _).")
            key = normalised(value)
            if rules.get(key, category) != category:
                raise CategoryMappingError(f"{source}:{number}: {value!r} already goes to {rules[key]!r}.")
            rules[key] = category
        if not rules:
            raise CategoryMappingError(f"{source} maps nothing; add lines like `chair: Furniture > Chairs`.")
        return cls(rules, source)

    @classmethod
    def load(cls, path: Path | None) -> CategoryMapping:
        """The store's file, or the default that ships with Lookalike."""
        if path is None:
            text = resources.files("lookalike.feed").joinpath(DEFAULT_MAPPING).read_text(encoding="utf-8")
            return cls.parse(text, DEFAULT_MAPPING)
        try:
            text = Path(path).read_text(encoding="utf-8-sig")
        except OSError as exc:
            raise CategoryMappingError(f"can't read the category mapping {path}: {exc.strerror or exc}") from None
        return cls.parse(text, str(path))

    def match(self, value: str) -> str | None:
        """The category of the longest rule that is `value` or a path above it."""
        key = normalised(value)
        if not key:
            return None
        parts = key.split(" > ")
        for end in range(len(parts), 0, -1):
            found = self.rules.get(" > ".join(parts[:end]))
            if found is not None:
                return found
        return None

    def category_of(self, product: FeedProduct) -> str | None:
        """product_type first (the store's own words), then google_product_category."""
        for attribute in ("product_type", "google_product_category"):
            whole = product.get(attribute)
            for value in [whole, *whole.split(",")]:  # product_type may list several paths, comma-separated
                found = self.match(value)
                if found is not None:
                    return found
        return None
