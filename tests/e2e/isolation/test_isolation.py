"""Issue 16, isolation enforced: with the node's NetworkPolicy engine (tests/harness/netpol.py)
the operator's per-Function policy holds. The invoke port answers the gateway and no other pod,
the metrics port answers pods in the scrapers' namespaces (--metrics-from) only, and functions
in two namespaces cannot reach each other. Each refusal is a dropped connection attempt made
from inside a pod; with KUBELAMBDA_E2E_NO_NETPOL=1 (no engine) every refusal assertion fails.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import pytest

from e2e.isolation.probes import CLIENT_LABELS, answered_eventually, client_pod, probe
from e2e.kit import (
    FUNCTIONS_NAMESPACE,
    REPO,
    Installed,
    function_manifests,
    http_get,
    wait_for,
    wait_function_ready,
)
from harness.cluster import Cluster
from harness.release import RELEASE, enforce_restricted

OTHER_NAMESPACE = "kl-iso-other"  # a second functions' namespace, and plain pods in it
SCRAPERS_NAMESPACE = "kl-iso-scrapers"  # the operator's --metrics-from for this module
INVOKE_PORT = 8080  # the runtime's invoke port (kubelambda.api.environment.INVOKE_PORT)
METRICS_PORT = 9102  # the runtime's /metrics port (METRICS_PORT)
NEAR = "iso-near"  # a Function in FUNCTIONS_NAMESPACE, with an HTTP Trigger
FAR = "iso-far"  # a Function in OTHER_NAMESPACE
CODE = "def handler(event, context):\n    return {'statusCode': 200, 'body': 'isolated'}\n"
ROLLOUT_TIMEOUT = 180.0
CLIENTS = ",".join(f"{key}={value}" for key, value in CLIENT_LABELS.items())


@dataclass(frozen=True)
class Scene:
    near_ip: str  # a pod of NEAR
    far_ip: str  # a pod of FAR
    near_pod: str
    far_pod: str


def _operator_deployment(running: Cluster, namespace: str) -> str:
    found = running.get(
        "deployments", "-n", namespace, "-l", "app.kubernetes.io/component=operator"
    )["items"]
    if not found:
        pytest.fail(f"the release has no operator Deployment in {namespace}")
    return str(found[0]["metadata"]["name"])


def _set_metrics_from(running: Cluster, installed: Installed, *, rollback: bool) -> None:
    """Restart the release's operator with --metrics-from=SCRAPERS_NAMESPACE (or roll back to
    the revision before), and wait until its new pod runs."""
    chart = str(REPO / "charts" / "kubelambda")
    if rollback:
        running.helm("rollback", RELEASE, "--namespace", installed.namespace)
    else:
        running.helm(
            "upgrade",
            RELEASE,
            chart,
            "--namespace",
            installed.namespace,
            "--reuse-values",
            "--set",
            f"runtime.metricsFrom={{{SCRAPERS_NAMESPACE}}}",
        )
    deployment = _operator_deployment(running, installed.namespace)
    running.kubectl(
        "rollout",
        "status",
        f"deployment/{deployment}",
        "-n",
        installed.namespace,
        f"--timeout={ROLLOUT_TIMEOUT:.0f}s",
        timeout=ROLLOUT_TIMEOUT + 10,
    )


def _policy_admits_scrapers(running: Cluster, namespace: str, function: str) -> bool:
    """The NetworkPolicy ``function``'s namespace shares (kubelambda-functions), as the
    restarted operator renders it, names the scrapers."""
    found = running.get(
        "networkpolicies", "-n", namespace, "-l", "app.kubernetes.io/component=functions"
    )["items"]
    return any(SCRAPERS_NAMESPACE in json.dumps(item["spec"]) for item in found)


def _running_pod(running: Cluster, namespace: str, function: str) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        pods = running.ready_pods(namespace, f"kubelambda.dev/function={function}")
        return pods[0] if pods else None

    found: dict[str, Any] = wait_for(ready, what=f"a Ready pod of {function}", timeout=180)
    return found


def _far_manifest() -> dict[str, Any]:
    function = function_manifests(FAR, code=CODE, scaling={"minReplicas": 1})[0]
    function["metadata"]["namespace"] = OTHER_NAMESPACE
    return function


@pytest.fixture(scope="module")
def scene(e2e_cluster: Cluster, installed: Installed) -> Iterator[Scene]:
    """NEAR (HTTP Trigger) and FAR, one pod each kept up; an idle client pod in each of the
    three namespaces; the operator restarted to admit SCRAPERS_NAMESPACE to metrics ports."""
    image = e2e_cluster.images.runtime.name
    enforce_restricted(e2e_cluster, (OTHER_NAMESPACE, SCRAPERS_NAMESPACE))
    _set_metrics_from(e2e_cluster, installed, rollback=False)
    try:
        e2e_cluster.apply(
            [
                *function_manifests(NEAR, code=CODE, path=f"/{NEAR}", scaling={"minReplicas": 1}),
                _far_manifest(),
                client_pod("client", FUNCTIONS_NAMESPACE, image),
                client_pod("client", OTHER_NAMESPACE, image),
                client_pod("client", SCRAPERS_NAMESPACE, image),
            ]
        )
        wait_function_ready(e2e_cluster, NEAR)
        for namespace, function in ((FUNCTIONS_NAMESPACE, NEAR), (OTHER_NAMESPACE, FAR)):
            wait_for(
                partial(_policy_admits_scrapers, e2e_cluster, namespace, function),
                what=f"{function}'s NetworkPolicy admitting {SCRAPERS_NAMESPACE}",
                timeout=120,
            )
        near, far = (
            _running_pod(e2e_cluster, FUNCTIONS_NAMESPACE, NEAR),
            _running_pod(e2e_cluster, OTHER_NAMESPACE, FAR),
        )
        for namespace in (FUNCTIONS_NAMESPACE, OTHER_NAMESPACE, SCRAPERS_NAMESPACE):
            e2e_cluster.wait_ready_pods(namespace, CLIENTS, timeout=120)
        yield Scene(
            near_ip=near["status"]["podIP"],
            far_ip=far["status"]["podIP"],
            near_pod=near["metadata"]["name"],
            far_pod=far["metadata"]["name"],
        )
    finally:
        e2e_cluster.kubectl(
            "delete", "pod", "client", "-n", FUNCTIONS_NAMESPACE, "--wait=false", check=False
        )
        e2e_cluster.kubectl("delete", "fn", NEAR, "-n", FUNCTIONS_NAMESPACE, check=False)
        e2e_cluster.kubectl(
            "delete", "namespace", OTHER_NAMESPACE, SCRAPERS_NAMESPACE, "--wait=false", check=False
        )
        _set_metrics_from(e2e_cluster, installed, rollback=True)


def test_invoke_port_answers_the_gateway_and_no_other_pod(
    e2e_cluster: Cluster, installed: Installed, scene: Scene
) -> None:
    status, _, body = http_get(f"{installed.gateway_url}/{NEAR}")
    assert status == 200, body
    assert b"isolated" in body, body

    target = f"{scene.near_ip}:{INVOKE_PORT}/"
    elsewhere = probe(e2e_cluster, OTHER_NAMESPACE, "client", target)[target]
    same_namespace = probe(e2e_cluster, FUNCTIONS_NAMESPACE, "client", target)[target]

    assert elsewhere["outcome"] == "timeout", f"a pod in {OTHER_NAMESPACE}: {elsewhere}"
    assert same_namespace["outcome"] == "timeout", f"a pod beside it: {same_namespace}"


def test_metrics_port_answers_the_scrapers_namespace_only(
    e2e_cluster: Cluster, scene: Scene
) -> None:
    target = f"{scene.near_ip}:{METRICS_PORT}/metrics"

    scraper = answered_eventually(e2e_cluster, SCRAPERS_NAMESPACE, "client", target)
    elsewhere = probe(e2e_cluster, OTHER_NAMESPACE, "client", target)[target]

    assert scraper["outcome"] == "answered", f"a pod in {SCRAPERS_NAMESPACE}: {scraper}"
    assert " 200" in scraper["status"], scraper
    assert elsewhere["outcome"] == "timeout", f"a pod in {OTHER_NAMESPACE}: {elsewhere}"


def test_functions_in_two_namespaces_cannot_reach_each_other(
    e2e_cluster: Cluster, scene: Scene
) -> None:
    to_far = f"{scene.far_ip}:{INVOKE_PORT}/"
    to_near = f"{scene.near_ip}:{INVOKE_PORT}/"

    from_near = probe(e2e_cluster, FUNCTIONS_NAMESPACE, scene.near_pod, to_far)[to_far]
    from_far = probe(e2e_cluster, OTHER_NAMESPACE, scene.far_pod, to_near)[to_near]

    assert from_near["outcome"] == "timeout", f"{NEAR} -> {FAR}: {from_near}"
    assert from_far["outcome"] == "timeout", f"{FAR} -> {NEAR}: {from_far}"
