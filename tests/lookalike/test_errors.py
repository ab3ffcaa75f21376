"""Every error has one status, one code and one shape; the batch jobs catch one type."""

from __future__ import annotations

import inspect

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from lookalike import errors
from lookalike.errors import (
    ApiError,
    BrokenImage,
    ErrorEnvelope,
    ImageRejected,
    JobError,
    NotAnImage,
    Overloaded,
    TooManyPixels,
    UnknownCategory,
)
from lookalike.service import install_error_handlers
from tests.support import ClientResponse

API_ERRORS = [cls for _, cls in inspect.getmembers(errors, inspect.isclass) if issubclass(cls, ApiError)]
JOB_ERRORS = [cls for _, cls in inspect.getmembers(errors, inspect.isclass) if issubclass(cls, JobError)]


def test_every_api_error_code_is_defined_once() -> None:
    codes = [cls.code for cls in API_ERRORS if cls is not ImageRejected]
    assert len(codes) == len(set(codes)), sorted(codes)


def test_every_error_a_user_can_cause_is_a_4xx_and_only_unavailability_is_a_5xx() -> None:
    for cls in API_ERRORS:
        if cls in (ApiError, ImageRejected):
            continue
        assert 400 <= cls.status < 500 or cls.status == 503, cls


def test_the_hierarchy_is_documented_at_the_top_of_the_module() -> None:
    for cls in API_ERRORS + JOB_ERRORS:
        assert cls.__name__ in (errors.__doc__ or ""), cls


def test_image_errors_keep_their_status_and_are_also_image_rejections() -> None:
    assert (TooManyPixels.status, NotAnImage.status, BrokenImage.status) == (413, 415, 422)
    assert all(issubclass(cls, ImageRejected) for cls in (TooManyPixels, NotAnImage, BrokenImage))
    assert not issubclass(UnknownCategory, ImageRejected)


def test_job_errors_are_not_api_errors() -> None:
    assert JOB_ERRORS and not any(issubclass(cls, ApiError) for cls in JOB_ERRORS)


def test_a_raised_error_answers_with_its_envelope_status_and_headers() -> None:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/busy")
    async def busy() -> None:
        raise Overloaded("The server is busy.", headers={"Retry-After": "1"})

    @app.get("/passed-on")
    async def passed_on() -> None:
        raise ApiError("From upstream.", code="broken_image", status=422)

    with TestClient(app) as client:
        response = client.get("/busy")
        assert response.status_code == 503 and response.headers["retry-after"] == "1"
        assert ErrorEnvelope.model_validate(response.json()).error.code == "overloaded"
        passed = client.get("/passed-on")
        assert passed.status_code == 422 and passed.json() == {
            "error": {"code": "broken_image", "message": "From upstream."}}


@pytest.mark.parametrize("path, status, code", [("/nowhere", 404, "not_found"), ("/number?n=x", 422, "invalid_request")])
def test_fastapi_s_own_errors_answer_with_the_same_envelope(path: str, status: int, code: str) -> None:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/number")
    async def number(n: int) -> int:
        return n

    with TestClient(app) as client:
        response: ClientResponse = client.get(path)
    assert response.status_code == status and response.json()["error"]["code"] == code


def test_a_405_names_every_method_served_at_the_path_not_only_the_first_route_s() -> None:
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/votes")
    async def cast() -> None: ...

    @app.delete("/votes")
    async def forget() -> None: ...

    with TestClient(app) as client:
        response = client.put("/votes")
    assert response.status_code == 405 and response.json()["error"]["code"] == "method_not_allowed"
    assert response.headers["allow"] == "DELETE, POST"


@pytest.mark.parametrize("body", [b'{"n": "\xff\xfe\xfa"}', b"[" * 100_000 + b"]" * 100_000])
def test_a_json_body_json_cannot_decode_at_all_is_a_422_like_any_bad_body(body: bytes) -> None:
    """Not UTF-8, or nested past the parser's recursion limit: FastAPI's own answer would be an undeclared 400."""
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/echo")
    async def echo(payload: dict[str, int]) -> dict[str, int]:
        return payload

    with TestClient(app) as client:
        response = client.post("/echo", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_request"
    assert "UTF-8 JSON" in response.json()["error"]["message"]
