"""A Google Merchant Center feed's products, from its RSS 2.0 XML (the `g:` namespace) or its TSV form.

The XML is parsed with defusedxml: a feed comes from the internet, and the standard parser
expands entities (a "billion laughs" bomb fills memory) and may resolve external ones (a file
or URL read on our side). Both are refused with an error that says so.

Each product becomes its attributes by Google's names (`price`, `brand`, ...), plus its photo
URLs: `image_link` first, then up to ten `additional_image_link`s.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as safe_xml
from defusedxml import DTDForbidden, EntitiesForbidden, ExternalReferenceForbidden

from lookalike.errors import FeedError

GOOGLE_NS = "http://base.google.com/ns/1.0"
MAX_ADDITIONAL_IMAGES = 10
IMAGE = "image_link"
ADDITIONAL_IMAGES = "additional_image_link"


@dataclass(frozen=True)
class FeedProduct:
    id: str
    attributes: dict[str, str]
    images: list[str] = field(default_factory=list)

    def get(self, name: str) -> str:
        return self.attributes.get(name, "")


@dataclass
class Feed:
    products: list[FeedProduct]
    problems: list[str] = field(default_factory=list)  # rows left out, with why
    form: str = "xml"


def parse_feed(data: bytes, source: str = "feed") -> Feed:
    """XML if the feed starts with `<`, else TSV with a header row."""
    head = data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n")
    return parse_xml(data, source) if head.startswith(b"<") else parse_tsv(data, source)


def _attribute_name(tag: str) -> str:
    """`{http://base.google.com/ns/1.0}image_link` and `image_link` are the same attribute."""
    return tag.rsplit("}", 1)[-1].strip().lower().replace(" ", "_")


def parse_xml(data: bytes, source: str = "feed") -> Feed:
    try:
        root = safe_xml.fromstring(data, forbid_dtd=False, forbid_entities=True, forbid_external=True)
    except EntitiesForbidden as exc:
        kind = "an external entity" if exc.sysid or exc.pubid else "an entity declaration"
        raise FeedError(f"{source} declares {kind} ({exc.name!r}); feeds with entities are refused, since they can "
                        "expand to fill memory or read files. Export the feed without a DTD.") from None
    except ExternalReferenceForbidden as exc:
        raise FeedError(f"{source} refers to an external resource ({exc.sysid!r}); refused.") from None
    except DTDForbidden:  # not raised with forbid_dtd=False; kept so a stricter setting reads well
        raise FeedError(f"{source} has a DTD; refused.") from None
    except ParseError as exc:
        raise FeedError(f"{source} is not well-formed XML: {exc}") from None
    items: list[Element] = list(root.iter("item"))
    feed = Feed([], form="xml")
    for number, item in enumerate(items, start=1):
        attributes: dict[str, str] = {}
        images: list[str] = []
        for child in item:
            name = _attribute_name(child.tag)
            text = (child.text or "").strip()
            if not text:
                continue
            if name == ADDITIONAL_IMAGES:
                images += [u.strip() for u in text.split(",") if u.strip()]
            elif name not in attributes or child.tag.startswith("{" + GOOGLE_NS):  # g:title beats RSS title
                attributes[name] = text
        _add(feed, attributes, images, f"item {number}")
    return feed


def parse_tsv(data: bytes, source: str = "feed") -> Feed:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FeedError(f"{source} is neither XML nor UTF-8 text (byte {exc.start}); a TSV feed must be UTF-8.") from None
    rows = csv.reader(io.StringIO(text, newline=""), delimiter="\t")
    header = [_attribute_name(h) for h in next(rows, [])]
    if "id" not in header or IMAGE not in header:
        raise FeedError(f"{source}: a TSV feed needs a header row with at least `id` and `image_link`; "
                        f"found {', '.join(header[:12]) or 'nothing'}.")
    feed = Feed([], form="tsv")
    for line, row in enumerate(rows, start=2):
        if not any(cell.strip() for cell in row):
            continue
        attributes: dict[str, str] = {}
        images: list[str] = []
        for name, cell in zip(header, row):
            cell = cell.strip()
            if not cell:
                continue
            if name == ADDITIONAL_IMAGES:  # comma-separated in one column, or the column repeated
                images += [u.strip() for u in cell.split(",") if u.strip()]
            else:
                attributes.setdefault(name, cell)
        _add(feed, attributes, images, f"line {line}")
    return feed


def _add(feed: Feed, attributes: dict[str, str], additional: list[str], where: str) -> None:
    item_id = attributes.get("id", "")
    if not item_id:
        feed.problems.append(f"{where}: no id; left out")
        return
    if IMAGE not in attributes:
        feed.problems.append(f"{item_id}: no image_link; left out")
        return
    images = [attributes[IMAGE]] + [u for u in additional[:MAX_ADDITIONAL_IMAGES] if u != attributes[IMAGE]]
    feed.products.append(FeedProduct(item_id, attributes, list(dict.fromkeys(images))))


# ---- attributes to catalogue columns ------------------------------------------------------------------------

PRICE = re.compile(r"^\s*([0-9]+(?:[.,][0-9]+)?)\s*([A-Za-z]{3})?\s*$")
FILTER_ATTRIBUTES = ("availability", "condition", "brand", "color", "material", "pattern", "size")
SPECIFIED_VALUES: dict[str, tuple[str, ...]] = {
    "availability": ("in_stock", "out_of_stock", "preorder", "backorder"),
    "condition": ("new", "refurbished", "used"),
}
"""Attributes whose values the Merchant Center specification lists, in its form (`in_stock`, not `in stock`)."""


def specification_value(name: str, text: str) -> str | None:
    """The specification's form of a listed attribute's value, whatever its spelling or case: `In Stock`,
    `in stock` and `IN_STOCK` are `in_stock`, `pre-order` is `preorder`. None when it fits no known form."""
    spelled = re.sub(r"[^a-z]", "", text.lower())
    return next((form for form in SPECIFIED_VALUES.get(name, ()) if form.replace("_", "") == spelled), None)


def unknown_values(products: list[FeedProduct]) -> dict[str, dict[str, int]]:
    """Per listed attribute, the values that fit no known form (kept verbatim), with how many products have each."""
    found: dict[str, dict[str, int]] = {}
    for product in products:
        for name in SPECIFIED_VALUES:
            value = product.get(name)
            if value and specification_value(name, value) is None:
                found.setdefault(name, {})[value] = found.get(name, {}).get(value, 0) + 1
    return found
TEXT_ATTRIBUTES = ("description",)
PASSED_ATTRIBUTES = ("link",)


def parse_price(text: str) -> tuple[str, str] | None:
    """"149.00 EUR" -> ("149.00", "EUR"); a comma decimal is read as a point. None if it is no price."""
    match = PRICE.match(text)
    if not match:
        return None
    return match.group(1).replace(",", "."), (match.group(2) or "").upper()


def sale_applies(product: FeedProduct, now: datetime) -> bool:
    """A sale price applies unless `sale_price_effective_date` (start/end, ISO 8601) says it is not on now."""
    period = product.get("sale_price_effective_date")
    if not period:
        return True
    start_text, _, end_text = period.partition("/")
    try:
        start = _moment(start_text)
        end = _moment(end_text) if end_text else None
    except ValueError:
        return False  # a period we can't read: the regular price is the safe one to show
    return (start is None or start <= now) and (end is None or now < end)


def _moment(text: str) -> datetime | None:
    text = text.strip()
    if not text:
        return None
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def catalogue_columns(product: FeedProduct, now: datetime | None = None) -> dict[str, str]:
    """The columns a feed product brings to the catalogue: price and currency (the sale price while it
    applies, the regular one then in `regular_price`), the shopper-facing attributes, the description
    (searched), the link (returned with each result)."""
    now = now or datetime.now(UTC)
    columns: dict[str, str] = {}
    regular = parse_price(product.get("price"))
    sale = parse_price(product.get("sale_price"))
    if sale is not None and sale_applies(product, now):
        columns["price"], columns["currency"] = sale
        if regular is not None:
            columns["regular_price"] = regular[0]
    elif regular is not None:
        columns["price"], columns["currency"] = regular
    for name in FILTER_ATTRIBUTES + TEXT_ATTRIBUTES + PASSED_ATTRIBUTES:
        if product.get(name):
            columns[name] = specification_value(name, product.get(name)) or product.get(name)
    return {k: v for k, v in columns.items() if v}
