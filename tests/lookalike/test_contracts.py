"""The embedding's wire format: base64 little-endian float32, lossless, validated."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from lookalike.contracts import Box, SearchRequest, decode_embedding, encode_embedding
from lookalike.errors import BadBox


def test_an_embedding_survives_the_wire_exactly() -> None:
    vector = np.random.default_rng(0).normal(size=2048).astype(np.float32)
    np.testing.assert_array_equal(decode_embedding(encode_embedding(vector)), vector)


@pytest.mark.parametrize("text", ["not base64!", "", "AAA=", encode_embedding(np.array([np.nan], np.float32))])
def test_anything_else_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        decode_embedding(text)


def test_a_search_request_validates_its_embedding_and_k() -> None:
    ok = encode_embedding(np.ones(4, np.float32))
    assert SearchRequest(embedding=ok, category="bed").k == 10
    with pytest.raises(ValidationError):
        SearchRequest(embedding="???", category="bed")
    with pytest.raises(ValidationError):
        SearchRequest(embedding=ok, category="bed", k=101)


def test_a_box_is_four_fractions_and_survives_its_wire_form() -> None:
    box = Box.parse("0.1,0.2,0.30000000000000004,1")
    assert (box.x0, box.y0, box.x1, box.y1) == (0.1, 0.2, 0.30000000000000004, 1.0)
    assert Box.parse(str(box)) == box
    assert box.pixels(1000, 500) == (100, 100, 300, 500)


@pytest.mark.parametrize("text, says", [("0,0,1", "four numbers"), ("0,0,1,x", "four numbers"),
                                        ("0,0,nan,1", "four numbers"), ("0,0,1,1.5", "from 0 to 1"),
                                        ("0.5,0,0.5,1", "inverted"), ("0,0.9,1,0.1", "inverted")])
def test_a_malformed_out_of_range_or_inverted_box_says_why(text: str, says: str) -> None:
    with pytest.raises(BadBox, match=says):
        Box.parse(text)
