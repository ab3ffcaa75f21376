"""Imports point down: the shared layer imports no service and no job, and the jobs import no service."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.support import REPO

SERVICES = {"gateway", "classifier_service", "similarity_service"}
JOBS = {"indexing", "evaluation", "supervisor", "bench"}


def imported_packages(folder: str) -> dict[str, set[str]]:
    """Each module of `folder` and the top-level packages it imports, lazily or not."""
    found: dict[str, set[str]] = {}
    for path in sorted((REPO / folder).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
        found[str(Path(path).relative_to(REPO))] = names
    return found


def test_the_shared_layer_imports_no_service_and_no_job() -> None:
    offending = {module: names & (SERVICES | JOBS) for module, names in imported_packages("lookalike").items()}
    assert {module: names for module, names in offending.items() if names} == {}


@pytest.mark.parametrize("job", ["indexing", "evaluation", "bench"])
def test_a_job_imports_no_service(job: str) -> None:
    """They reach a service over HTTP, as processes they start on loopback (`supervisor.stack.loopback_stack`)."""
    offending = {module: names & SERVICES for module, names in imported_packages(job).items()}
    assert {module: names for module, names in offending.items() if names} == {}
