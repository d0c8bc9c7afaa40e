"""Scenario 2: `kubectl apply` of the example Function and HTTP Trigger -> the function is at zero,
a request through the gateway wakes it and gets the handler's answer, with Server-Timing:
coldstart. The wake-up must reach the autoscaler: were it lost, the autoscaler's next tick
would start the pod anyway, a second later, and only the logs would tell. The pod announces
itself to the autoscaler as soon as it serves (docs/contracts.md "Announcements"): its
Function's key, the operator's reads of the key and the pod, and the NetworkPolicies must all
let that through, or
the gateway waits for the kubelet's report, up to a second, and again only the logs tell."""

from __future__ import annotations

import json

from e2e.kit import (
    FUNCTIONS_NAMESPACE,
    REPO,
    Installed,
    component_log,
    deployment_replicas,
    function_pods,
    http_get,
    wait_for,
    wait_function_ready,
)
from harness.cluster import Cluster

EXAMPLE = REPO / "examples" / "cluster" / "hello.yaml"


def test_first_request_wakes_the_function_from_zero(
    e2e_cluster: Cluster, installed: Installed
) -> None:
    e2e_cluster.kubectl("apply", "-n", FUNCTIONS_NAMESPACE, "-f", str(EXAMPLE))
    wait_function_ready(e2e_cluster, "hello")
    assert deployment_replicas(e2e_cluster, "hello") == 0
    assert function_pods(e2e_cluster, "hello") == []

    status, headers, body = http_get(f"{installed.gateway_url}/hello?name=e2e")

    assert status == 200, body
    assert json.loads(body)["message"] == "Hello, e2e!"
    assert "coldstart" in headers.get("server-timing", ""), headers
    assert deployment_replicas(e2e_cluster, "hello") >= 1
    # The gateway's wake-up scaled it (a tick would give its own reason, "activating").
    operator = component_log(e2e_cluster, "operator", lines=400)
    assert f"{FUNCTIONS_NAMESPACE}/hello scaled to 1: woken by a request" in operator, operator
    gateway = component_log(e2e_cluster, "gateway", lines=400)
    assert "the autoscaler did not answer" not in gateway, gateway
    [pod] = [p["metadata"]["name"] for p in function_pods(e2e_cluster, "hello")]
    announced = f"{FUNCTIONS_NAMESPACE}/hello: pod {pod} announced it serves"
    wait_for(
        lambda: announced in component_log(e2e_cluster, "operator", lines=400),
        what=f"the operator to accept {pod}'s announcement (its log: '{announced}')",
        timeout=10,
    )
    assert "announcement for" not in component_log(e2e_cluster, "operator", lines=400)
