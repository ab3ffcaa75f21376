"""/widget.js and what it loads, in process: compressed, cacheable, and small."""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.gateway.mock_services import gateway_over
from tests.gateway.test_cross_origin import nothing_upstream

WIDGET_BUDGET_GZIPPED = 25_000


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with gateway_over(nothing_upstream, tmp_path_factory.mktemp("widget")) as client:
        yield client


def dialog_path(entry: str) -> str:
    found = re.search(r'"\./(widget/dialog\.[0-9a-f]{12}\.js)"', entry)
    assert found, "widget.js imports its dialog by a content-hashed name"
    return "/" + found.group(1)


def test_widget_js_is_a_gzipped_module_revalidated_by_its_etag(gateway: TestClient) -> None:
    answer = gateway.get("/widget.js", headers={"Accept-Encoding": "gzip"})
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/javascript")
    assert answer.headers["content-encoding"] == "gzip" and "Accept-Encoding" in answer.headers["vary"]
    assert answer.headers["cache-control"] == "public, max-age=300"
    assert 'customElements.define("lookalike-search"' in answer.text
    again = gateway.get("/widget.js", headers={"If-None-Match": answer.headers["etag"]})
    assert again.status_code == 304 and again.content == b""


def test_the_dialog_loads_from_a_content_hashed_address_cached_for_a_year(gateway: TestClient) -> None:
    dialog = gateway.get(dialog_path(gateway.get("/widget.js").text), headers={"Accept-Encoding": "gzip"})
    assert dialog.status_code == 200 and dialog.headers["content-encoding"] == "gzip"
    assert dialog.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert "export function createDialog" in dialog.text
    assert gateway.get("/widget/dialog.0123456789ab.js").status_code == 404


def test_everything_the_widget_loads_is_at_most_25_kb_gzipped(gateway: TestClient) -> None:
    entry = gateway.get("/widget.js").content
    sizes = [len(gzip.compress(entry)), len(gzip.compress(gateway.get(dialog_path(entry.decode())).content))]
    assert sum(sizes) <= WIDGET_BUDGET_GZIPPED, sizes


def test_no_eval_and_no_inline_styles_so_a_strict_csp_is_enough() -> None:
    for source in (Path(__file__).parents[2] / "gateway" / "static" / "widget").glob("*.js"):
        text = source.read_text()
        assert not re.search(r"\beval\(|new Function\(|innerHTML|setAttribute\(\"style\"|\.style\.", text), source
