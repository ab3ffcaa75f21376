"""Reading an upload: capped while it streams, one multipart field kept, every refusal a clear 4xx."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from lookalike.service import install_error_handlers
from lookalike.uploads import read_body, read_multipart_field

LIMIT = 1000


@pytest.fixture
def client() -> Iterator[TestClient]:
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/raw")
    async def raw(request: Request) -> dict[str, int]:
        return {"bytes": len(await read_body(request, LIMIT))}

    @app.post("/form")
    async def form(request: Request) -> dict[str, str]:
        return {"image": (await read_multipart_field(request, "image", LIMIT)).decode()}

    with TestClient(app) as test_client:
        yield test_client


def code_of(response: object) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]  # type: ignore[attr-defined]


def test_a_raw_body_within_the_limit_is_read_whole(client: TestClient) -> None:
    assert client.post("/raw", content=b"x" * LIMIT).json() == {"bytes": LIMIT}


def test_a_raw_body_over_the_limit_is_a_413(client: TestClient) -> None:
    assert code_of(client.post("/raw", content=b"x" * (LIMIT + 1))) == (413, "upload_too_large")


def test_a_streamed_body_is_refused_once_it_passes_the_limit(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield from (b"x" * 400 for _ in range(10))  # no Content-Length: counted as it arrives

    assert code_of(client.post("/raw", content=chunks())) == (413, "upload_too_large")


def test_an_empty_body_is_a_400(client: TestClient) -> None:
    assert code_of(client.post("/raw", content=b"")) == (400, "empty_upload")


def test_the_named_field_is_kept_and_the_others_dropped(client: TestClient) -> None:
    response = client.post("/form", files={"note": ("n.txt", b"ignored"), "image": ("p.jpg", b"photo bytes")})
    assert response.json() == {"image": "photo bytes"}


def test_a_form_without_the_field_is_a_400_that_names_it(client: TestClient) -> None:
    response = client.post("/form", files={"picture": ("p.jpg", b"photo")})
    assert code_of(response) == (400, "missing_field") and "`image`" in response.json()["error"]["message"]


def test_an_empty_field_is_a_400(client: TestClient) -> None:
    assert code_of(client.post("/form", files={"image": ("p.jpg", b"")})) == (400, "empty_upload")


def test_a_field_over_the_limit_is_a_413(client: TestClient) -> None:
    assert code_of(client.post("/form", files={"image": ("p.jpg", b"x" * (LIMIT + 1))})) == (413, "upload_too_large")


def test_a_body_that_is_not_multipart_is_a_415(client: TestClient) -> None:
    assert code_of(client.post("/form", content=b"photo", headers={"content-type": "image/jpeg"}))[0] == 415


def test_multipart_without_a_boundary_is_a_400(client: TestClient) -> None:
    response = client.post("/form", content=b"photo", headers={"content-type": "multipart/form-data"})
    assert code_of(response) == (400, "bad_request") and "boundary" in response.json()["error"]["message"]


def test_a_malformed_multipart_body_is_a_400(client: TestClient) -> None:
    response = client.post("/form", content=b"--x\r\nnot a header line\r\n\r\nphoto",
                           headers={"content-type": "multipart/form-data; boundary=x"})
    assert response.status_code == 400
