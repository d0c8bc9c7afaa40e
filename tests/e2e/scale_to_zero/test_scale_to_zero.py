"""Scenario 4: a Function left idle is scaled to zero by the autoscaler, from the gateway's metrics
as Prometheus scraped them; the next request wakes it and is served."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request

from e2e.kit import (
    Installed,
    deployment_replicas,
    function_manifests,
    function_pods,
    http_get,
    wait_for,
    wait_function_ready,
)
from harness.cluster import Cluster

NAME = "sleepy"
CODE = "def handler(event, context):\n    return {'statusCode': 200, 'body': 'awake'}\n"
IDLE_SECONDS = 10


def _prometheus_saw_requests(prometheus_url: str) -> bool:
    query = urllib.parse.urlencode(
        {"query": f'sum(kubelambda_gateway_requests_total{{function="{NAME}"}})'}
    )
    with urllib.request.urlopen(f"{prometheus_url}/api/v1/query?{query}", timeout=5) as answer:
        result = json.loads(answer.read())["data"]["result"]
    return bool(result) and float(result[0]["value"][1]) > 0


def test_idle_function_scales_to_zero_and_wakes_again(
    e2e_cluster: Cluster, installed: Installed
) -> None:
    url = f"{installed.gateway_url}/{NAME}"
    e2e_cluster.apply(
        function_manifests(
            NAME, code=CODE, path=f"/{NAME}", scaling={"scaleToZeroAfterSeconds": IDLE_SECONDS}
        )
    )
    wait_function_ready(e2e_cluster, NAME)
    for _ in range(5):
        status, _, body = http_get(url)
        assert (status, body) == (200, b"awake")
    assert deployment_replicas(e2e_cluster, NAME) >= 1
    # The decision must come from Prometheus' data: it has to have seen the traffic.
    wait_for(
        lambda: _prometheus_saw_requests(installed.prometheus_url),
        what=f"Prometheus holding the gateway's request count for {NAME}",
        timeout=30,
    )

    idle_since = time.monotonic()
    wait_for(
        lambda: deployment_replicas(e2e_cluster, NAME) == 0,
        what=f"{NAME} scaled to zero after {IDLE_SECONDS} s idle",
        timeout=IDLE_SECONDS + 90,
    )
    assert time.monotonic() - idle_since >= IDLE_SECONDS * 0.8
    # Its last pod may still be terminating (and serving what it has): wait until it is gone,
    # so the next request meets a function with nothing running.
    wait_for(
        lambda: function_pods(e2e_cluster, NAME) == [],
        what=f"{NAME}'s last pod gone",
        timeout=60,
    )

    status, headers, body = http_get(url)
    assert (status, body) == (200, b"awake")
    assert "coldstart" in headers.get("server-timing", ""), headers
