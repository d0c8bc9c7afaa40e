"""Issue 14, the warm pool on the cluster: a Function at zero in the pool's namespace is served on
its first request by a specialised pool pod (its env and Secret values, reachable from the
gateway only) while its Deployment scales up; the hand-over to the Deployment's pod under a
steady client loop fails no request; the pool refills; a burst larger than the pool is answered;
a handler that does not import is answered as any init failure and spoils nothing in the pool.

The scenario's Function sleeps in its init outside a pool pod (its hostname says which), so its
Deployment's pod becomes Ready SLOW_INIT seconds later and the specialised pod serves meanwhile:
long enough to probe it, and the hand-over happens inside the client loop.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import pytest

from e2e.isolation.probes import client_pod, probe, wait_started
from e2e.kit import FUNCTIONS_NAMESPACE, Installed, function_manifests, wait_for
from e2e.warm_pool.scene import (
    FROM_POOL_LABEL,
    FUNCTION_LABEL,
    POOL_LABEL,
    POOL_POD_PREFIX,
    POOL_PORT,
    SPECIALIZED_FOR,
    Answer,
    PodLog,
    SteadyLoop,
    events,
    function,
    function_status,
    invoke_anonymous,
    pod_log,
    request,
    unclaimed_pool_pods,
    wait_at_zero_on_pool_path,
    wait_pool_full,
)
from harness.cluster import Cluster
from harness.release import POOL_NAMESPACE, POOL_SIZE, enforce_restricted

NAME = "warm-hello"
OTHER_NAMESPACE = "kl-warm-other"  # a plain client pod outside the pool's namespace
INVOKE_PORT = 8080
SECRET_VALUE = "from-a-secret"
SLOW_INIT = 20  # seconds of init in the Deployment's pod (within its timeoutSeconds, 30)
LOOP_RATE, LOOP_SECONDS = 10.0, 32.0
CODE = f"""\
import json, os, socket, time
if not socket.gethostname().startswith({POOL_POD_PREFIX!r}):
    time.sleep({SLOW_INIT})  # the Deployment's pod: Ready later, so the pool pod serves first

def handler(event, context):
    return {{"statusCode": 200, "body": json.dumps({{
        "pod": socket.gethostname(),
        "greeting": os.environ.get("GREETING"),
        "secret": os.environ.get("FROM_SECRET"),
    }})}}
"""
FAST = "import socket\ndef handler(event, context):\n    return socket.gethostname()\n"
ENV: list[dict[str, Any]] = [
    {"name": "GREETING", "value": "hello from the spec"},
    {"name": "FROM_SECRET", "valueFrom": {"secretKeyRef": {"name": "warm-secret", "key": "v"}}},
]


@dataclass(frozen=True)
class Scene:
    loop: SteadyLoop
    pods: PodLog
    first: Answer
    pool_before: tuple[str, ...]  # the unclaimed pool pods before the first request


@pytest.fixture(scope="module")
def scene(e2e_cluster: Cluster, installed: Installed) -> Iterator[Scene]:
    image = e2e_cluster.images.runtime.name
    enforce_restricted(e2e_cluster, (OTHER_NAMESPACE,))
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "warm-secret", "namespace": POOL_NAMESPACE},
        "stringData": {"v": SECRET_VALUE},
    }
    e2e_cluster.apply(
        [
            secret,
            *function(NAME, code=CODE, env=ENV, timeout=30),
            client_pod("client", POOL_NAMESPACE, image),
            client_pod("client", OTHER_NAMESPACE, image),
        ]
    )
    try:
        wait_at_zero_on_pool_path(e2e_cluster, NAME)
        wait_started(e2e_cluster, POOL_NAMESPACE, "client")
        wait_started(e2e_cluster, OTHER_NAMESPACE, "client")
        pool = wait_pool_full(e2e_cluster)
        with pod_log(e2e_cluster) as pods:
            loop = SteadyLoop(
                f"{installed.gateway_url}/{NAME}", rate=LOOP_RATE, seconds=LOOP_SECONDS
            )
            first = wait_for(
                partial(loop.start().answer, 0), what="the first request's answer", timeout=40
            )
            yield Scene(loop, pods, first, tuple(p["metadata"]["name"] for p in pool))
            loop.join(timeout=LOOP_SECONDS + 70)
    finally:
        e2e_cluster.kubectl("delete", "namespace", OTHER_NAMESPACE, "--wait=false", check=False)
        e2e_cluster.kubectl(
            "delete", "pod", "client", "-n", POOL_NAMESPACE, "--wait=false", check=False
        )


def test_the_first_request_is_served_by_a_specialised_pool_pod(
    e2e_cluster: Cluster, scene: Scene
) -> None:
    assert scene.first.status == 200, scene.first.body
    answered = scene.first.json()
    print(f"first request answered in {scene.first.took * 1000:.0f} ms by {answered['pod']}")
    assert answered["pod"] in scene.pool_before, (answered, scene.pool_before)
    assert answered["greeting"] == "hello from the spec", answered
    assert answered["secret"] == SECRET_VALUE, answered
    claimed = [
        pod
        for _, _, pod in scene.pods.of(answered["pod"])
        if pod["metadata"].get("annotations", {}).get(SPECIALIZED_FOR)
    ]
    assert claimed, f"pod {answered['pod']} was never seen annotated {SPECIALIZED_FOR}"
    meta = claimed[0]["metadata"]
    assert meta["annotations"][SPECIALIZED_FOR] == f"{POOL_NAMESPACE}/{NAME}", meta
    assert meta["labels"].get(FUNCTION_LABEL) == NAME, meta
    assert POOL_LABEL not in meta["labels"] and FROM_POOL_LABEL in meta["labels"], meta
    assert meta["ownerReferences"][0]["kind"] == "Function", meta
    started = wait_for(
        lambda: events(e2e_cluster, NAME, "WarmStarted"), what="Event WarmStarted", timeout=30
    )
    assert answered["pod"] in started[0]["message"], started
    print(f"WarmStarted: {started[0]['message']}")
    assert function_status(e2e_cluster, NAME)["coldStartPath"] == "pool"


def test_the_specialised_pod_answers_the_gateway_only(e2e_cluster: Cluster, scene: Scene) -> None:
    specialised = scene.first.json()["pod"]
    ip = scene.pods.of(specialised)[-1][2]["status"]["podIP"]
    waiting = e2e_cluster.ready_pods(POOL_NAMESPACE, POOL_LABEL)
    assert waiting, "no Ready unclaimed pool pod left to probe"
    unclaimed = waiting[0]
    to_invoke, to_pool = (
        f"{ip}:{INVOKE_PORT}/",
        f"{unclaimed['status']['podIP']}:{POOL_PORT}/healthz",
    )
    found: dict[str, dict[str, object]] = {}

    def run(namespace: str, target: str) -> None:
        found[f"{namespace} -> {target}"] = probe(e2e_cluster, namespace, "client", target)[target]

    probes = [
        threading.Thread(target=run, args=(OTHER_NAMESPACE, to_invoke)),
        threading.Thread(target=run, args=(POOL_NAMESPACE, to_invoke)),
        threading.Thread(target=run, args=(POOL_NAMESPACE, to_pool)),
    ]
    for thread in probes:
        thread.start()
    for thread in probes:
        thread.join(timeout=90)
    probed_until = time.monotonic()

    deleting = scene.pods.first(specialised, deleting=True)
    assert deleting is None or deleting > probed_until, (
        f"specialised pod {specialised} was deleted before the probes ended: a refusal would"
        f" prove nothing (raise SLOW_INIT, now {SLOW_INIT} s)"
    )
    assert len(found) == 3, found
    assert all(result["outcome"] == "timeout" for result in found.values()), found


def test_the_hand_over_to_the_deployment_fails_no_request(
    e2e_cluster: Cluster, scene: Scene
) -> None:
    specialised = scene.first.json()["pod"]
    answers = scene.loop.join(timeout=LOOP_SECONDS + 70)
    failed = [a for a in answers if a.status != 200]
    assert len(answers) == int(LOOP_RATE * LOOP_SECONDS), len(answers)
    assert failed == [], [(round(a.sent - scene.first.sent, 2), a.status, a.body) for a in failed]
    deployment_pods = [
        name
        for name in scene.pods.names()
        if (labels := scene.pods.of(name)[-1][2]["metadata"].get("labels", {})).get(FUNCTION_LABEL)
        == NAME
        and FROM_POOL_LABEL not in labels
    ]
    assert deployment_pods, f"no pod of {NAME}'s Deployment seen: {scene.pods.names()}"
    ready = min(t for name in deployment_pods if (t := scene.pods.first(name, ready=True)))
    deleting = wait_for(
        lambda: scene.pods.first(specialised, deleting=True),
        what=f"specialised pod {specialised} deleted",
        timeout=30,
    )
    print(
        f"Deployment's pod Ready {ready - scene.first.sent:.1f} s after the first request;"
        f" specialised pod deleted {deleting - ready:.2f} s later"
    )
    assert deleting >= ready, "the specialised pod went before the Deployment's pod was Ready"
    by = [a.json()["pod"] for a in answers]
    assert specialised in by and set(by) - {specialised}, set(by)
    late = [a.json()["pod"] for a in answers if a.sent > deleting + 1]
    assert late and specialised not in late, late
    wait_for(
        lambda: scene.pods.of(specialised)[-1][1] == "DELETED",
        what=f"specialised pod {specialised} gone (its grace: timeout + 2 s)",
        timeout=60,
    )


def test_the_pool_refills(e2e_cluster: Cluster, scene: Scene) -> None:
    pool = wait_pool_full(e2e_cluster)
    assert scene.first.json()["pod"] not in [p["metadata"]["name"] for p in pool]


def test_a_burst_from_zero_larger_than_the_pool_is_answered(
    e2e_cluster: Cluster, installed: Installed
) -> None:
    names = [f"warm-burst-{index}" for index in range(POOL_SIZE + 1)]
    e2e_cluster.apply([item for name in names for item in function(name, code=FAST)])
    wait_at_zero_on_pool_path(e2e_cluster, *names)
    wait_pool_full(e2e_cluster)
    answers: dict[str, Answer] = {}

    def call(name: str, index: int) -> None:
        answers[f"{name}#{index}"] = request(f"{installed.gateway_url}/{name}")

    threads = [threading.Thread(target=call, args=(n, i)) for n in names for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=90)

    outcomes = {key: (a.status, round(a.took, 2), a.body[:80]) for key, a in answers.items()}
    print(f"burst: {outcomes}")
    assert len(answers) == len(threads), outcomes
    assert all(a.status == 200 for a in answers.values()), outcomes
    warm = [n for n in names if events(e2e_cluster, n, "WarmStarted")]
    print(f"burst: {len(warm)} of {len(names)} Functions served from the pool first: {warm}")
    assert warm, "no Function of the burst was served from the pool"
    wait_pool_full(e2e_cluster)


def test_a_handler_that_does_not_import_spoils_nothing(
    e2e_cluster: Cluster, installed: Installed
) -> None:
    name = "warm-broken"
    e2e_cluster.apply(function(name, code="import no_such_module\n"))
    wait_at_zero_on_pool_path(e2e_cluster, name)
    wait_pool_full(e2e_cluster)

    status, headers, body = invoke_anonymous(installed.gateway_url, name)

    assert status == 200, body
    assert headers.get("x-amz-function-error") == "Unhandled", headers
    assert body["errorType"] == "Runtime.ImportModuleError", body
    assert body["errorMessage"] == "Unable to import module 'app': No module named 'no_such_module'"
    failed = wait_for(
        lambda: events(e2e_cluster, name, "WarmStartFailed"),
        what="Event WarmStartFailed",
        timeout=30,
    )
    message = failed[0]["message"]
    assert "422" in message and "Runtime.ImportModuleError" in message, message
    spoiled = message.split("pool pod ", 1)[1].split()[0]
    wait_for(
        lambda: (
            spoiled not in [p["metadata"]["name"] for p in unclaimed_pool_pods(e2e_cluster)]
            and not e2e_cluster.get(
                "pods", "-n", POOL_NAMESPACE, f"--field-selector=metadata.name={spoiled}"
            )["items"]
        ),
        what=f"the spoiled pool pod {spoiled} deleted",
        timeout=30,
    )
    wait_pool_full(e2e_cluster)  # every unclaimed pod Ready and `waiting`


def test_functions_outside_the_pool_namespace_take_the_deployment_path(
    e2e_cluster: Cluster, installed: Installed
) -> None:
    name = "warm-elsewhere"
    e2e_cluster.apply(function_manifests(name, code=FAST))
    try:
        status = wait_for(
            lambda: (
                found
                if (found := e2e_cluster.get("fn", name, "-n", FUNCTIONS_NAMESPACE).get("status"))
                and found.get("coldStartPath")
                else None
            ),
            what=f"{name}'s status.coldStartPath",
            timeout=60,
        )
        assert status["coldStartPath"] == "deployment", json.dumps(status)
        assert f"namespace {FUNCTIONS_NAMESPACE} has no warm pool" in status["coldStartReason"]
    finally:
        e2e_cluster.kubectl("delete", "fn", name, "-n", FUNCTIONS_NAMESPACE, check=False)
