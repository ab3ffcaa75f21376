"""The Dockerfile, read without a Docker engine (none runs here): what the two images hold and how they start.

One file, two targets: `serving` (the default, last stage) for the three services, without torch, and
`index`, which adds the indexing job's torch pair and the `index` extra.
"""

from __future__ import annotations

import re
import tomllib

import pytest

from tests.deploy.dockerfile import Dockerfile, parse_dockerfile
from tests.support import REPO

ROLES = ["classifier_service", "similarity_service", "gateway", "indexing"]


@pytest.fixture(scope="module")
def dockerfile() -> Dockerfile:
    return parse_dockerfile(REPO / "Dockerfile")


def test_the_images_start_from_a_slim_python(dockerfile: Dockerfile) -> None:
    base = dockerfile.args("FROM")[0]
    assert base.startswith("python:3.11-slim")
    for target in ("serving", "index"):
        assert dockerfile.stage(target).args("FROM")[0] == base


def test_serving_is_the_default_target_and_installs_the_base_distribution_alone(dockerfile: Dockerfile) -> None:
    assert dockerfile.stage_names[-1] == "serving"
    serving = dockerfile.stage("serving")
    installs = [run for run in serving.args("RUN") if "pip install" in run]
    assert installs and all("torch" not in run and "optional-dependencies" not in run for run in installs)
    assert any("['project']['dependencies']" in run for run in installs)
    assert all("requirements-torch.txt" not in sources for sources, _ in serving.copied)


def test_torch_comes_from_the_cpu_wheel_index_into_the_index_image_and_everything_else_pinned(
        dockerfile: Dockerfile) -> None:
    index = dockerfile.stage("index")
    assert "TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu" in index.args("ARG")
    install = next(run for run in index.args("RUN") if "requirements-torch.txt" in run)
    assert '--index-url "$TORCH_INDEX_URL" -r /tmp/requirements/requirements-torch.txt' in install
    assert install.index("requirements-torch.txt") < install.index("-c /tmp/requirements/constraints.txt")
    assert "['optional-dependencies']['index']" in install
    for line in (REPO / "requirements-torch.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            assert "==" in line, f"requirements-torch.txt: {line} is not pinned"
    pinned = {line.split("==")[0].lower() for line in (REPO / "constraints.txt").read_text().splitlines() if "==" in line}
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for dependency in [*project["dependencies"], *project["optional-dependencies"]["index"]]:
        name = re.split(r"[<>=\[ ]", dependency)[0].lower()
        assert name in pinned, f"{dependency} has no pin in constraints.txt"


def test_the_image_copies_only_requirements_and_code_never_weights_photos_or_an_index(dockerfile: Dockerfile) -> None:
    sources = sorted({source.rstrip("/") for sources, _ in dockerfile.copied for source in sources})
    assert sources == sorted(["requirements-torch.txt", "pyproject.toml", "constraints.txt", *ROLES, "lookalike"])
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    assert ignore[ignore.index("*") + 1:], "everything is ignored first, then the needed paths allowed back"
    allowed = [line[1:].rstrip("/") for line in ignore if line.startswith("!")]
    assert sorted(allowed) == sorted(sources)


def test_the_command_picks_the_role_and_every_role_is_in_the_image(dockerfile: Dockerfile) -> None:
    for target, default in (("serving", "gateway"), ("index", "indexing")):
        image = dockerfile.stage(target)
        assert image.exec_form("ENTRYPOINT") == ["python", "-m"]
        assert image.exec_form("CMD")[0] == default
        copied = {source.rstrip("/") for sources, _ in image.copied for source in sources}
        assert set(ROLES) <= copied, target
    for role in ROLES:
        assert (REPO / role / "__main__.py").is_file()


def test_it_runs_as_a_non_root_user_that_owns_the_writable_volumes(dockerfile: Dockerfile) -> None:
    for target in ("serving", "index"):
        assert dockerfile.stage(target).last("USER") not in ("root", "0")
    assert any("chown lookalike:lookalike /data/index /data/torch" in run for run in dockerfile.args("RUN"))


def test_weights_are_strictly_imagenet_and_downloaded_into_a_volume(dockerfile: Dockerfile) -> None:
    env = dockerfile.env
    assert env["WEIGHTS"] == "imagenet"
    assert env["TORCH_HOME"].startswith("/data/") and env["INDEX"].startswith("/data/")


def test_every_role_listens_on_all_interfaces_on_the_exposed_port(dockerfile: Dockerfile) -> None:
    env = dockerfile.env
    port = dockerfile.last("EXPOSE")
    for service in ("CLASSIFIER", "SIMILARITY", "GATEWAY"):
        assert env[f"{service}_HOST"] == "0.0.0.0"
        assert env[f"{service}_PORT"] == port


def test_the_healthcheck_asks_readyz_with_python_since_a_slim_image_has_no_curl(dockerfile: Dockerfile) -> None:
    check = dockerfile.last("HEALTHCHECK")
    assert "--start-period=" in check and "--interval=" in check
    assert f"http://127.0.0.1:{dockerfile.last('EXPOSE')}/readyz" in check
    assert 'CMD ["python", "-c"' in check
