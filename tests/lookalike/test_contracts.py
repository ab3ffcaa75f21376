"""The embedding's wire format: base64 little-endian float32, lossless, validated."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from lookalike.contracts import SearchRequest, decode_embedding, encode_embedding


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
