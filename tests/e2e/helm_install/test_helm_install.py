"""Scenario 1: `helm install` of charts/kubelambda on the real cluster -> the operator and gateway
pods are Ready, and the gateway answers on its admin port."""

from __future__ import annotations

from e2e.kit import Installed, fail_on_crash, http_get
from harness.cluster import Cluster
from harness.release import GATEWAY_ADMIN_PORT, SELECTOR


def test_operator_and_gateway_pods_are_ready(e2e_cluster: Cluster, installed: Installed) -> None:
    fail_on_crash(e2e_cluster)
    pods = e2e_cluster.ready_pods(installed.namespace, SELECTOR)
    components = {pod["metadata"]["labels"].get("app.kubernetes.io/component") for pod in pods}
    assert {"operator", "gateway"} <= components

    for ip in installed.gateway_pod_ips:
        status, _, body = http_get(f"http://{ip}:{GATEWAY_ADMIN_PORT}/healthz", timeout=5)
        assert status == 200, body
