"""deploy/kubernetes/, checked without a cluster: every resource against the Kubernetes API schema
(kubernetes-validate, from PyPI, strict: unknown fields fail), and the references between them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.support import REPO

MANIFESTS = sorted((REPO / "deploy" / "kubernetes").glob("*.yaml"))
SERVING = ["classifier", "similarity", "gateway"]
Resource = dict[str, Any]


@pytest.fixture(scope="module")
def resources() -> dict[tuple[str, str], Resource]:
    found = {}
    for path in MANIFESTS:
        for resource in yaml.safe_load_all(path.read_text()):
            found[(resource["kind"], resource["metadata"]["name"])] = resource
    return found


def container(resources: dict[tuple[str, str], Resource], kind: str, name: str) -> Resource:
    return pod_spec(resources[(kind, name)])["containers"][0]


def pod_spec(resource: Resource) -> Resource:
    return resource["spec"]["template"]["spec"]


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_every_manifest_is_valid_against_the_kubernetes_schema(path: Path) -> None:
    for resource in yaml.safe_load_all(path.read_text()):
        kubernetes_validate.validate(resource, kubernetes_validate.latest_version(), strict=True)


def test_a_schema_violation_is_caught() -> None:
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"},
                                      "spec": {"ports": [{"port": "eighty"}]}},
                                     kubernetes_validate.latest_version(), strict=True)


@pytest.mark.parametrize("name", SERVING)
def test_each_service_has_a_deployment_with_probes_on_readyz_and_healthz_and_a_service(
        resources: dict[tuple[str, str], Resource], name: str) -> None:
    deployment = resources[("Deployment", f"lookalike-{name}")]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    spec = container(resources, "Deployment", f"lookalike-{name}")
    assert spec["args"][0] in ("classifier_service", "similarity_service", "gateway")
    assert spec["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert spec["livenessProbe"]["httpGet"]["path"] == "/healthz"
    port_names = {port["name"] for port in spec["ports"]}
    assert spec["readinessProbe"]["httpGet"]["port"] in port_names
    service = resources[("Service", f"lookalike-{name}")]
    assert service["spec"]["selector"].items() <= labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert all(port["targetPort"] in port_names for port in service["spec"]["ports"])


def test_the_classifier_scales_by_cpu_and_requests_cpu_so_that_it_can(resources: dict[tuple[str, str], Resource]) -> None:
    hpa = resources[("HorizontalPodAutoscaler", "lookalike-classifier")]
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "lookalike-classifier"}
    assert [metric["resource"]["name"] for metric in hpa["spec"]["metrics"]] == ["cpu"]
    assert container(resources, "Deployment", "lookalike-classifier")["resources"]["requests"]["cpu"]


def test_the_gateway_finds_every_classifier_pod_through_a_headless_service(
        resources: dict[tuple[str, str], Resource]) -> None:
    assert resources[("Service", "lookalike-classifier")]["spec"]["clusterIP"] == "None"
    env = {item["name"]: item.get("value") for item in container(resources, "Deployment", "lookalike-gateway")["env"]}
    for variable, service in (("CLASSIFIER_URL", "lookalike-classifier"), ("SIMILARITY_URL", "lookalike-similarity")):
        port = resources[("Service", service)]["spec"]["ports"][0]["port"]
        assert env[variable] == f"http://{service}:{port}"


def test_the_index_is_read_only_many_for_serving_pods_and_written_only_by_the_indexer(
        resources: dict[tuple[str, str], Resource]) -> None:
    assert "ReadOnlyMany" in resources[("PersistentVolumeClaim", "lookalike-index")]["spec"]["accessModes"]
    workloads = [(kind, name) for kind, name in resources if kind in ("Deployment", "Job")]
    for kind, name in workloads:
        spec = pod_spec(resources[(kind, name)])
        for volume in spec.get("volumes", []):
            claim = volume["persistentVolumeClaim"]
            assert ("PersistentVolumeClaim", claim["claimName"]) in resources
            if claim["claimName"] == "lookalike-index":
                assert claim.get("readOnly", False) is (kind == "Deployment"), name
        mounted = {mount["name"] for mount in spec["containers"][0].get("volumeMounts", [])}
        assert mounted == {volume["name"] for volume in spec.get("volumes", [])}, name


def test_weights_are_strictly_imagenet_and_pods_run_as_the_images_non_root_user(
        resources: dict[tuple[str, str], Resource]) -> None:
    env = container(resources, "Deployment", "lookalike-classifier")["env"]
    classifier = {item["name"]: item.get("value") for item in env}  # a token from a Secret has no value
    assert classifier["WEIGHTS"] == "imagenet"
    indexer = container(resources, "Job", "lookalike-indexer")["args"]
    assert indexer[indexer.index("--weights") + 1] == "imagenet"
    for (kind, name), resource in resources.items():
        if kind in ("Deployment", "Job"):
            assert pod_spec(resource)["securityContext"]["runAsNonRoot"] is True, name


def test_the_services_run_the_serving_image_and_the_indexer_the_index_image(
        resources: dict[tuple[str, str], Resource]) -> None:
    """As in compose.yaml: the three services' image has no torch; only the indexer's has it."""
    serving = {container(resources, "Deployment", f"lookalike-{name}")["image"] for name in SERVING}
    assert serving == {"lookalike:latest"}
    assert container(resources, "Job", "lookalike-indexer")["image"] == "lookalike-index:latest"


def test_the_internal_token_reaches_both_services_and_the_job_from_one_secret(
        resources: dict[tuple[str, str], Resource]) -> None:
    """The Job's reloads carry LOOKALIKE_INTERNAL_TOKEN; each service accepts none without the same token."""
    for kind, name in [("Deployment", "lookalike-classifier"), ("Deployment", "lookalike-similarity"),
                       ("Job", "lookalike-indexer")]:
        env = {item["name"]: item for item in container(resources, kind, name)["env"]}
        assert env["LOOKALIKE_INTERNAL_TOKEN"]["valueFrom"]["secretKeyRef"] == {
            "name": "lookalike-internal", "key": "LOOKALIKE_INTERNAL_TOKEN"}, name
