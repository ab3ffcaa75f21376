"""A Merchant Center feed read as XML or TSV, its attributes as columns, its categories from a mapping."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from lookalike.errors import CategoryMappingError, FeedError
from lookalike.feed.categories import CategoryMapping
from lookalike.feed.parse import FeedProduct, catalogue_columns, parse_feed, unknown_values
from tests.lookalike.feed.feed_server import as_tsv, as_xml

PRODUCTS: list[dict[str, object]] = [
    {"id": "oak-1", "title": "Oak chair", "description": "A chair of oak & ash", "link": "https://shop.example/oak-1",
     "image_link": "https://cdn.example/oak-1.jpg",
     "additional_image_link": ["https://cdn.example/oak-1b.jpg", "https://cdn.example/oak-1c.jpg"],
     "price": "149.00 EUR", "availability": "in_stock", "brand": "Woodly", "color": "brown", "material": "oak",
     "item_group_id": "oak", "google_product_category": "443"},
    {"id": "sofa-1", "title": "Green sofa", "link": "https://shop.example/sofa-1",
     "image_link": "https://cdn.example/sofa-1.jpg", "price": "900 EUR", "sale_price": "700 EUR",
     "availability": "preorder", "product_type": "Furniture > Sofas > Sectional Sofas"},
]


def test_the_xml_and_the_tsv_form_of_a_feed_give_the_same_products() -> None:
    xml, tsv = parse_feed(as_xml(PRODUCTS)), parse_feed(as_tsv(PRODUCTS))
    assert (xml.form, tsv.form) == ("xml", "tsv")
    assert xml.products == tsv.products
    oak = xml.products[0]
    assert oak.images == ["https://cdn.example/oak-1.jpg", "https://cdn.example/oak-1b.jpg",
                          "https://cdn.example/oak-1c.jpg"]
    assert oak.get("description") == "A chair of oak & ash" and oak.get("google_product_category") == "443"


def test_an_entity_expansion_bomb_is_refused_before_it_expands() -> None:
    bomb = (b'<?xml version="1.0"?>\n<!DOCTYPE rss [\n<!ENTITY a "aaaaaaaaaa">\n'
            + b"".join(f'<!ENTITY {c} "{("&" + p + ";") * 10}">\n'.encode() for p, c in zip("abcdefgh", "bcdefghi"))
            + b']>\n<rss xmlns:g="http://base.google.com/ns/1.0"><channel><item><g:id>&i;</g:id></item></channel></rss>')
    with pytest.raises(FeedError, match="entit"):
        parse_feed(bomb)


def test_an_external_entity_is_refused_and_nothing_is_read() -> None:
    xxe = (b'<?xml version="1.0"?>\n<!DOCTYPE rss [<!ENTITY secret SYSTEM "file:///etc/passwd">]>\n'
           b'<rss xmlns:g="http://base.google.com/ns/1.0"><channel><item><g:id>&secret;</g:id>'
           b"<g:image_link>https://cdn.example/x.jpg</g:image_link></item></channel></rss>")
    with pytest.raises(FeedError, match="external entity"):
        parse_feed(xxe)


def test_malformed_xml_and_a_tsv_without_the_needed_columns_are_clear_errors() -> None:
    with pytest.raises(FeedError, match="not well-formed"):
        parse_feed(b"<rss><channel><item></channel>")
    with pytest.raises(FeedError, match="`id` and `image_link`"):
        parse_feed(b"sku\ttitle\n1\tchair\n")


def test_rows_without_an_id_or_a_photo_are_left_out_and_said_so() -> None:
    feed = parse_feed(as_tsv([{"title": "no id", "image_link": "https://cdn.example/a.jpg"}, {"id": "no-photo"}]))
    assert feed.products == []
    assert feed.problems == ["line 2: no id; left out", "no-photo: no image_link; left out"]


def test_price_becomes_a_number_and_a_currency_and_a_sale_price_wins_while_it_applies() -> None:
    oak, sofa = parse_feed(as_xml(PRODUCTS)).products
    columns = catalogue_columns(oak)
    assert columns == {"price": "149.00", "currency": "EUR", "availability": "in_stock", "brand": "Woodly",
                       "color": "brown", "material": "oak", "description": "A chair of oak & ash",
                       "link": "https://shop.example/oak-1"}
    assert catalogue_columns(sofa)["price"] == "700" and catalogue_columns(sofa)["regular_price"] == "900"
    december = FeedProduct("s", {**sofa.attributes,
                                 "sale_price_effective_date": "2026-12-01T00:00+01:00/2026-12-31T23:59+01:00"})
    assert catalogue_columns(december, datetime(2026, 12, 6, tzinfo=UTC))["price"] == "700"
    assert catalogue_columns(december, datetime(2027, 1, 6, tzinfo=UTC))["price"] == "900"


def test_the_default_mapping_knows_googles_taxonomy_by_path_and_by_id() -> None:
    mapping = CategoryMapping.load(None)

    def category(**attributes: str) -> str | None:
        return mapping.category_of(FeedProduct("x", attributes))

    assert category(google_product_category="443") == "chair"
    assert category(google_product_category="5886") == "chair"  # Kitchen & Dining Room Chairs
    assert category(google_product_category="Furniture > Chairs > Rocking Chairs") == "chair"
    assert category(google_product_category="furniture>sofas") == "sofa"
    assert category(google_product_category="Furniture > Beds & Accessories > Beds & Bed Frames") == "bed"
    assert category(google_product_category="Furniture > Beds & Accessories > Mattresses") is None
    assert category(google_product_category="4636") == "lamp"
    assert category(google_product_category="Home & Garden > Decor > Vases") is None
    assert category(product_type="Furniture > Tables > Coffee Tables", google_product_category="443") == "table"


def test_a_stores_mapping_adds_its_own_paths_and_a_bad_line_says_where() -> None:
    mapping = CategoryMapping.parse("# ours\nchair: Home > Furniture > Chairs\narmchair: Home > Furniture > Chairs > "
                                    "Armchairs\n", "mine.txt")
    assert mapping.category_of(FeedProduct("x", {"product_type": "Home > Furniture > Chairs > Stools"})) == "chair"
    assert mapping.category_of(FeedProduct("x", {"product_type": "Home > Furniture > Chairs > Armchairs"})) == "armchair"
    with pytest.raises(CategoryMappingError, match="mine.txt:2"):
        CategoryMapping.parse("chair: Furniture > Chairs\nFurniture > Sofas\n", "mine.txt")
    with pytest.raises(CategoryMappingError, match="already goes to"):
        CategoryMapping.parse("chair: 443\nsofa: 443\n", "mine.txt")


@pytest.mark.parametrize(("name", "spellings", "form"), [
    ("availability", ["in_stock", "in stock", "In Stock", "IN_STOCK", " in-stock "], "in_stock"),
    ("availability", ["out_of_stock", "out of stock", "Out Of Stock"], "out_of_stock"),
    ("availability", ["preorder", "pre-order", "Pre order"], "preorder"),
    ("availability", ["backorder", "back order", "BACKORDER"], "backorder"),
    ("condition", ["new", "New", "NEW"], "new"),
    ("condition", ["refurbished", "Refurbished"], "refurbished"),
    ("condition", ["used", "USED"], "used"),
])
def test_a_listed_attribute_is_kept_in_the_specifications_form_whatever_its_spelling(
        name: str, spellings: list[str], form: str) -> None:
    for spelling in spellings:
        assert catalogue_columns(FeedProduct("p", {name: spelling}))[name] == form


def test_a_value_of_no_known_form_is_kept_verbatim_and_counted() -> None:
    products = [FeedProduct(str(n), {"availability": value, "condition": "new"})
                for n, value in enumerate(["in stock", "coming soon", "coming soon", "limited"])]
    assert catalogue_columns(products[1])["availability"] == "coming soon"
    assert unknown_values(products) == {"availability": {"coming soon": 2, "limited": 1}}
