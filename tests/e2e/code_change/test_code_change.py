"""Scenario 3: a code change to a running Function -> new pods serve the new code, and a client
calling all through the roll sees no failed request."""

from __future__ import annotations

import threading
import time
from collections import Counter

from e2e.kit import (
    Installed,
    function_manifests,
    function_pods,
    http_get,
    wait_function_ready,
)
from harness.cluster import Cluster

NAME = "rolling"
CODE = "def handler(event, context):\n    return {{'statusCode': 200, 'body': '{version}'}}\n"
ROLL_TIMEOUT = 120.0


def test_code_change_rolls_without_a_failed_request(
    e2e_cluster: Cluster, installed: Installed
) -> None:
    url = f"{installed.gateway_url}/{NAME}"
    # minReplicas 1: the roll, not a cold start, is under test.
    scaling = {"minReplicas": 1}
    e2e_cluster.apply(
        function_manifests(NAME, code=CODE.format(version="v1"), path=f"/{NAME}", scaling=scaling)
    )
    wait_function_ready(e2e_cluster, NAME)
    status, _, body = http_get(url)
    assert (status, body) == (200, b"v1")
    old_pods = {pod["metadata"]["name"] for pod in function_pods(e2e_cluster, NAME)}

    seen: Counter[str] = Counter()
    stop = threading.Event()

    def client() -> None:
        # Bounded: it stops at the event or at the deadline, whichever comes first.
        deadline = time.monotonic() + ROLL_TIMEOUT + 10
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                code, _, answer = http_get(url, timeout=10)
                seen[answer.decode() if code == 200 else f"HTTP {code}: {answer[:200]!r}"] += 1
            except OSError as exc:
                seen[f"error: {exc!r}"] += 1
            time.sleep(0.02)

    loop = threading.Thread(target=client, daemon=True)
    loop.start()
    try:
        e2e_cluster.apply(
            function_manifests(
                NAME, code=CODE.format(version="v2"), path=f"/{NAME}", scaling=scaling
            )
        )
        deadline = time.monotonic() + ROLL_TIMEOUT
        while True:
            pods = {pod["metadata"]["name"] for pod in function_pods(e2e_cluster, NAME)}
            if seen["v2"] >= 20 and not pods & old_pods:
                break
            assert time.monotonic() < deadline, f"roll not done: pods {pods}, answers {seen}"
            time.sleep(0.5)
    finally:
        stop.set()
        loop.join(timeout=15)

    failures = {answer: count for answer, count in seen.items() if answer not in ("v1", "v2")}
    assert failures == {}, f"failed requests during the roll: {failures} (all answers {seen})"
    assert seen["v1"] > 0 and seen["v2"] > 0
