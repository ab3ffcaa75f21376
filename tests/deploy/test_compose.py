"""compose.yaml, checked without a Docker engine: against the Compose Specification's JSON schema,
and every service, volume, port and URL it names against the others and the Dockerfile.

The schema is the one check-jsonschema (PyPI) vendors from compose-spec/compose-spec.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.dockerfile import parse_dockerfile
from tests.support import REPO

SERVING = ["classifier", "similarity", "gateway"]
Compose = dict[str, Any]


@pytest.fixture(scope="module")
def compose() -> Compose:
    return yaml.safe_load((REPO / "compose.yaml").read_text())


@pytest.fixture(scope="module")
def port() -> int:
    return int(parse_dockerfile(REPO / "Dockerfile").last("EXPOSE"))


def check_schema(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(path)],
                          capture_output=True, text=True, timeout=120)


def test_compose_yaml_follows_the_compose_specification() -> None:
    result = check_schema(REPO / "compose.yaml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_catches_a_misspelt_key(tmp_path: Path) -> None:
    broken = tmp_path / "compose.yaml"
    broken.write_text((REPO / "compose.yaml").read_text().replace("start_period:", "start_periods:", 1))
    assert check_schema(broken).returncode != 0


def test_there_are_the_three_services_and_a_one_shot_indexer_in_a_profile(compose: Compose) -> None:
    services = compose["services"]
    assert sorted(services) == sorted([*SERVING, "indexer", "milvus"])
    assert services["indexer"]["profiles"] == ["index"] and services["indexer"]["restart"] == "no"
    assert services["milvus"]["profiles"] == ["milvus"]
    assert all("profiles" not in services[name] for name in SERVING)


def lookalike_services(compose: Compose) -> dict[str, dict[str, Any]]:
    """Every service but the `milvus` profile's Milvus server, which runs Milvus's own image."""
    return {name: service for name, service in compose["services"].items() if name != "milvus"}


def test_the_services_run_the_serving_image_and_the_indexer_the_index_image(compose: Compose) -> None:
    """Two targets of the one Dockerfile: the services' has no torch, the job's has it."""
    targets = parse_dockerfile(REPO / "Dockerfile").stage_names
    for name, service in lookalike_services(compose).items():
        wanted = "index" if name == "indexer" else "serving"
        assert service["build"]["target"] == wanted and wanted in targets, name
        assert (REPO / service["build"]["context"] / "Dockerfile").is_file()
        assert (REPO / service["command"][0] / "__main__.py").is_file()
    images = {name: service["image"] for name, service in lookalike_services(compose).items()}
    assert len({images[name] for name in SERVING}) == 1 and images["indexer"] not in {images[n] for n in SERVING}


def test_every_volume_used_is_declared_and_every_declared_volume_used(compose: Compose) -> None:
    used = set()
    for service in compose["services"].values():
        for mount in service.get("volumes", []):
            if mount["type"] == "volume":
                used.add(mount["source"])
            else:
                assert (REPO / mount["source"]).is_dir(), mount
    assert used == set(compose["volumes"])


def test_the_serving_roles_read_the_index_only_the_indexer_writes_it(compose: Compose) -> None:
    index = parse_dockerfile(REPO / "Dockerfile").env["INDEX"]
    for name, service in lookalike_services(compose).items():
        mounts = {mount["target"]: mount for mount in service.get("volumes", [])}
        if name == "gateway":
            continue
        assert mounts[index]["source"] == "index"
        assert mounts[index].get("read_only", False) is (name != "indexer")


def test_torch_home_is_a_volume_so_the_weights_are_downloaded_once(compose: Compose) -> None:
    for name in ("classifier", "indexer"):
        service = compose["services"][name]
        targets = {mount["target"]: mount["source"] for mount in service["volumes"]}
        assert targets[service["environment"]["TORCH_HOME"]] == "torch_home"


def test_weights_are_strictly_imagenet_never_auto(compose: Compose) -> None:
    assert compose["services"]["classifier"]["environment"]["WEIGHTS"] == "imagenet"
    command = compose["services"]["indexer"]["command"]
    assert command[command.index("--weights") + 1] == "imagenet"
    assert "auto" not in (REPO / "compose.yaml").read_text().replace("restart", "")


def test_the_internal_token_reaches_both_services_and_the_indexer_the_admin_token_the_gateway(compose: Compose) -> None:
    """The indexer's reloads carry LOOKALIKE_INTERNAL_TOKEN, required from .env; only the gateway has operator routes."""
    services = compose["services"]
    for name in ("classifier", "similarity", "indexer"):
        assert services[name]["environment"]["LOOKALIKE_INTERNAL_TOKEN"].startswith("${LOOKALIKE_INTERNAL_TOKEN:?"), name
        assert "LOOKALIKE_ADMIN_TOKEN" not in services[name]["environment"], name
    assert "LOOKALIKE_ADMIN_TOKEN" in services["gateway"]["environment"]
    assert "LOOKALIKE_INTERNAL_TOKEN" not in services["gateway"]["environment"]


def test_only_the_gateway_publishes_a_port_and_it_is_the_one_it_listens_on(compose: Compose, port: int) -> None:
    published = {name: service["ports"] for name, service in compose["services"].items() if "ports" in service}
    assert list(published) == ["gateway"]
    assert [mapping["target"] for mapping in published["gateway"]] == [port]


def test_every_url_names_a_service_and_its_port(compose: Compose, port: int) -> None:
    urls = [value for service in lookalike_services(compose).values()
            for value in [*service.get("environment", {}).values(), *service["command"]] if str(value).startswith("http")]
    assert len(urls) == 4
    for url in urls:
        host, _, url_port = url.removeprefix("http://").partition(":")
        assert host in SERVING and int(url_port) == port, url


def test_long_running_services_have_a_healthcheck_with_interval_and_start_period(compose: Compose, port: int) -> None:
    for name in SERVING:
        check = compose["services"][name]["healthcheck"]
        assert check["interval"] and check["start_period"], name
        assert f"http://127.0.0.1:{port}/readyz" in " ".join(check["test"])
    assert compose["services"]["indexer"]["healthcheck"] == {"disable": True}


def test_the_gateway_waits_for_healthy_services_that_up_starts(compose: Compose) -> None:
    services = compose["services"]
    for name, service in services.items():
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in services and "profiles" not in services[dependency], (name, dependency)
            assert condition == {"condition": "service_healthy"}
            assert "disable" not in services[dependency]["healthcheck"]
    assert sorted(services["gateway"]["depends_on"]) == ["classifier", "similarity"]


def test_the_classifier_can_be_scaled_it_names_no_container_and_publishes_no_port(compose: Compose) -> None:
    classifier = compose["services"]["classifier"]
    assert "container_name" not in classifier and "ports" not in classifier
