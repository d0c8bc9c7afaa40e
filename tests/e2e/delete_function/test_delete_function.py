"""Scenario 6: `kubectl delete` of a Function -> everything the controller made for it (its
Deployment, Service and pods; a ConfigMap and NetworkPolicy where it had them) is gone, and its
route answers 404."""

from __future__ import annotations

from e2e.kit import (
    FUNCTIONS_NAMESPACE,
    Installed,
    function_manifests,
    http_get,
    owned_objects,
    wait_for,
    wait_function_ready,
)
from harness.cluster import Cluster

NAME = "doomed"
CODE = "def handler(event, context):\n    return {'statusCode': 200, 'body': 'here'}\n"


def test_deleting_a_function_removes_what_it_owned(
    e2e_cluster: Cluster, installed: Installed
) -> None:
    url = f"{installed.gateway_url}/{NAME}"
    e2e_cluster.apply(
        function_manifests(NAME, code=CODE, path=f"/{NAME}", scaling={"minReplicas": 1})
    )
    wait_function_ready(e2e_cluster, NAME)
    assert http_get(url)[0] == 200
    before = owned_objects(e2e_cluster, NAME)
    kinds = {entry.split("/")[0] for entry in before}
    # Small inline code: no ConfigMap; no destinations declared: no policy of its own.
    assert {"Deployment", "Service", "Pod"} <= kinds, before

    e2e_cluster.kubectl("delete", "-n", FUNCTIONS_NAMESPACE, f"fn/{NAME}", "--wait=true")
    e2e_cluster.kubectl("delete", "-n", FUNCTIONS_NAMESPACE, f"trig/{NAME}-http", check=False)

    wait_for(
        lambda: owned_objects(e2e_cluster, NAME) == [],
        what=f"every object of Function {NAME} gone (had {before})",
        timeout=90,
    )
    wait_for(lambda: http_get(url, timeout=5)[0] == 404, what=f"{url} answering 404", timeout=30)
