"""Each service's OpenAPI page is its API reference: schemathesis holds every service to it.

The three services run as real processes on loopback, on the suite's small index (random weights).
For every operation in each service's OpenAPI document, schemathesis sends the schema's examples,
its coverage cases (boundaries, missing and wrong-typed values) and up to EXAMPLES generated
requests, valid and invalid, and runs every check it has (`--checks all`): no 5xx, only declared
statuses, content types and headers, bodies matching their response models, invalid data refused,
an Allow header on 405 naming what is served, bearer auth enforced where declared. Derandomized:
the same cases on every run.

The document is built from each app at import (the parametrization needs it before any service
runs); the first test checks that each running service serves exactly that document.

Uploads are generated too: schemathesis cannot make a valid photo, so the photo search and the
classifier get random bytes, which they must refuse with a declared 413 or 415 (too large, not an
image). `positive_data_acceptance` expects a 2xx for schema-valid data; but a well-formed request
can name an item, a category or a session that does not exist, so a declared 401, 404 or 422 counts
as accepting it too.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from classifier_service.app import create_app as create_classifier
from gateway.app import create_app as create_gateway
from similarity_service.app import create_app as create_similarity
from tests.support import Services

EXAMPLES = 20  # generated cases per operation, beside the examples and the coverage phase's cases
SETTINGS = settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
                    suppress_health_check=list(HealthCheck))
ACCEPTED = ["2xx", "401", "404", "422"]
UPLOADS = {"/api/v1/search": ["400", "410"], "/v1/classify": []}
"""Uploads, and what else a schema-valid request may get: the photo search takes `image` OR `photo=<handle>`,
which OpenAPI cannot say, so neither or both is a 400, and a well-formed handle this gateway does not hold a 410."""
CONFIG = {"checks": {"positive_data_acceptance": {"expected-statuses": ACCEPTED}},
          "operations": [{"include-path": path,
                          "checks": {"positive_data_acceptance": {"expected-statuses": [*ACCEPTED, "413", "415", *more]}}}
                         for path, more in UPLOADS.items()]}
OPENAPI = {"gateway": create_gateway().openapi(), "similarity": create_similarity().openapi(),
           "classifier": create_classifier().openapi()}


def schema_of(service: str) -> Any:
    config = schemathesis.config.SchemathesisConfig.from_dict(CONFIG)
    return schemathesis.openapi.from_dict(OPENAPI[service], config=config)


@pytest.fixture(scope="module")
def stack(built_index: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    """The three services, the gateway's votes in a database of its own (not in the shared index)."""
    logs = tmp_path_factory.mktemp("schemathesis-logs")
    env = {"gateway": {"FEEDBACK_DB_URL": f"sqlite:///{logs / 'feedback.sqlite3'}"},
           "classifier": {"CLASSIFIER_MAX_BATCH": "1"}}
    with Services(built_index, logs).running(env=env, ready=("gateway",)) as services:
        yield services


@pytest.mark.parametrize("service", list(OPENAPI))
def test_each_service_serves_the_document_its_app_describes(stack: Services, service: str) -> None:
    assert httpx.get(f"{stack.url(service)}/openapi.json", timeout=30).json() == OPENAPI[service]


@schema_of("gateway").parametrize()
@SETTINGS
def test_the_gateway_answers_as_its_openapi_page_says(case: schemathesis.Case, stack: Services) -> None:
    case.call_and_validate(base_url=stack.url("gateway"), timeout=60)


@schema_of("similarity").parametrize()
@SETTINGS
def test_the_similarity_service_answers_as_its_openapi_page_says(case: schemathesis.Case, stack: Services) -> None:
    case.call_and_validate(base_url=stack.url("similarity"), timeout=60)


@schema_of("classifier").parametrize()
@SETTINGS
def test_the_classifier_answers_as_its_openapi_page_says(case: schemathesis.Case, stack: Services) -> None:
    case.call_and_validate(base_url=stack.url("classifier"), timeout=60)
