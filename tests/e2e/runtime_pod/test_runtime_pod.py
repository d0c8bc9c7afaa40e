"""Scenario 0: the runtime image runs as a real pod on the real node and answers an invocation over
its pod IP, handler code mounted from a ConfigMap, hardened as the controller will run it."""

from __future__ import annotations

import textwrap

from harness.cluster import Cluster
from harness.workloads import code_configmap, invoke, runtime_deployment

NAMESPACE = "default"
CODE = textwrap.dedent(
    """
    import os


    def handler(event, context):
        with open("/tmp/probe", "w") as scratch:  # /tmp is writable, the rest is not
            scratch.write("ok")
        return {
            "echo": event,
            "function": context.function_name,
            "requestId": context.aws_request_id,
            "uid": os.getuid(),
            "taskRoot": os.environ["LAMBDA_TASK_ROOT"],
        }


    def boom(event, context):
        raise ValueError("no good")
    """
)


def test_runtime_pod_answers_over_its_pod_ip(e2e_cluster: Cluster) -> None:
    e2e_cluster.apply(
        [
            code_configmap("scenario0-code", NAMESPACE, {"app.py": CODE}),
            runtime_deployment(
                name="scenario0",
                namespace=NAMESPACE,
                image=e2e_cluster.images.runtime.name,
                handler="app.handler",
                code_configmap="scenario0-code",
            ),
        ]
    )
    pods = e2e_cluster.wait_ready_pods(NAMESPACE, "app.kubernetes.io/name=scenario0", timeout=120)
    ip = pods[0]["status"]["podIP"]

    answer = invoke(ip, {"hello": "pod"})

    assert answer.status == 200
    assert answer.body["echo"] == {"hello": "pod"}
    assert answer.body["function"] == "scenario0"
    assert answer.body["uid"] == 10001
    assert answer.body["taskRoot"] == "/var/task"
    assert answer.body["requestId"]


def test_handler_error_has_lambdas_shape_from_a_pod(e2e_cluster: Cluster) -> None:
    e2e_cluster.apply(
        [
            code_configmap("scenario0-boom-code", NAMESPACE, {"app.py": CODE}),
            runtime_deployment(
                name="scenario0-boom",
                namespace=NAMESPACE,
                image=e2e_cluster.images.runtime.name,
                handler="app.boom",
                code_configmap="scenario0-boom-code",
            ),
        ]
    )
    pods = e2e_cluster.wait_ready_pods(
        NAMESPACE, "app.kubernetes.io/name=scenario0-boom", timeout=120
    )
    ip = pods[0]["status"]["podIP"]

    answer = invoke(ip, {})

    assert answer.status == 200
    assert answer.headers.get("x-amz-function-error") == "Unhandled"
    assert answer.body["errorType"] == "ValueError"
    assert answer.body["errorMessage"] == "no good"
