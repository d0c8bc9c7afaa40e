"""Scenario: a provided.al2023 Function on the cluster, its code a deployment package on S3 (a
real MinIO that pods reach through a relay) holding an executable bootstrap: a static Go binary
built against aws-lambda-go, and another whose bootstrap runs AWS's Python runtime interface
client (awslambdaric, packaged with it). The runtime image holds nothing for them: its runtime
serves the bootstrap the Lambda Runtime API on the pod's loopback. Each answers through the
gateway, with Lambda's context, and its error answers Lambda's error shape through the Invoke
API.

Needs, beyond the packages scenario: the chart's runtime.images to map provided.al2023 to the
runtime image (harness/release.py's chart_values)."""

from __future__ import annotations

import json
import stat
import zipfile
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from e2e.kit import (
    FUNCTIONS_NAMESPACE,
    S3_REGION,
    Installed,
    http_get,
    wait_function_ready,
)
from harness.cluster import Cluster
from harness.minio import Minio, minio_server
from harness.relay import Relay, relay
from integration.runtime.custom_runtimes import builds
from support.zips import entry, make_zip

BUCKET = "custom-runtimes"
EXECUTABLE = stat.S_IFREG | 0o755


# The runtime image's interpreter (Debian's python3, 3.11) runs AWS's Python runtime interface
# client, installed into the package as its manylinux wheels for that Python.
RIC_BOOTSTRAP = """#!/bin/sh
export PYTHONPATH="$LAMBDA_TASK_ROOT/ric:$LAMBDA_TASK_ROOT"
exec /usr/bin/python3 -m awslambdaric "$_HANDLER"
"""
RIC_HANDLER = builds.AWSLAMBDARIC_FOLDER / "handler.py"


def go_package() -> bytes:
    return make_zip([(entry("bootstrap", mode=EXECUTABLE), builds.go_bootstrap().read_bytes())])


def awslambdaric_package() -> bytes:
    """bootstrap + handler.py + awslambdaric (and its dependencies) under ric/."""
    ric = builds.awslambdaric_dir(python="3.11")
    files: list[tuple[str | zipfile.ZipInfo, bytes | str]] = [
        (entry("bootstrap", mode=EXECUTABLE), RIC_BOOTSTRAP),
        ("handler.py", RIC_HANDLER.read_bytes()),
    ]
    for path in sorted(ric.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.name != ".complete":
            files.append((f"ric/{path.relative_to(ric)}", path.read_bytes()))
    return make_zip(files)


@pytest.fixture
def storage(
    e2e_cluster: Cluster, installed: Installed, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Relay]:
    """MinIO on loopback with both packages, reachable from pods through a relay."""
    with (
        minio_server(region=S3_REGION, log_dir=tmp_path_factory.mktemp("minio-logs")) as minio,
        relay(e2e_cluster.node_ip) as to_minio,
    ):
        host, port = minio.endpoint.removeprefix("http://").split(":")
        to_minio.target = (host, int(port))
        s3 = minio.client()
        s3.create_bucket(Bucket=BUCKET)
        s3.put_object(Bucket=BUCKET, Key="gofn.zip", Body=go_package())
        s3.put_object(Bucket=BUCKET, Key="ricfn.zip", Body=awslambdaric_package())
        e2e_cluster.apply([credentials(minio)])
        yield to_minio


def credentials(minio: Minio) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "custom-runtimes-s3", "namespace": FUNCTIONS_NAMESPACE},
        "stringData": {
            "AWS_ACCESS_KEY_ID": minio.access_key,
            "AWS_SECRET_ACCESS_KEY": minio.secret_key,
        },
    }


def manifests(name: str, key: str, to_minio: Relay, **spec: Any) -> list[dict[str, Any]]:
    source = {
        "endpoint": to_minio.url,
        "bucket": BUCKET,
        "key": key,
        "credentialsSecret": {"name": "custom-runtimes-s3"},
    }
    return [
        {
            "apiVersion": "kubelambda.dev/v1alpha1",
            "kind": "Function",
            "metadata": {"name": name, "namespace": FUNCTIONS_NAMESPACE},
            "spec": {
                "runtime": "provided.al2023",
                "timeoutSeconds": 30,
                "code": {"s3": source},
                "invoke": {"anonymous": True},
                **spec,
            },
        },
        {
            "apiVersion": "kubelambda.dev/v1alpha1",
            "kind": "Trigger",
            "metadata": {"name": f"{name}-http", "namespace": FUNCTIONS_NAMESPACE},
            "spec": {"function": name, "http": {"path": f"/{name}", "methods": ["GET"]}},
        },
    ]


def ready(e2e_cluster: Cluster, name: str) -> None:
    wait_function_ready(e2e_cluster, name)
    e2e_cluster.kubectl(
        "wait",
        f"trig/{name}-http",
        "-n",
        FUNCTIONS_NAMESPACE,
        "--for=condition=Ready",
        "--timeout=60s",
        timeout=70,
    )


def test_a_go_bootstrap_answers_through_the_gateway(
    e2e_cluster: Cluster, installed: Installed, storage: Relay
) -> None:
    e2e_cluster.apply(manifests("gofn", "gofn.zip", storage))
    ready(e2e_cluster, "gofn")

    status, _, body = http_get(f"{installed.gateway_url}/gofn", timeout=120)
    assert status == 200, body[:2000]
    answer = json.loads(body)
    assert answer["functionName"] == "gofn"
    assert answer["cwd"] == "/var/task"
    assert answer["env"]["LAMBDA_TASK_ROOT"] == "/var/task"
    assert answer["env"]["AWS_LAMBDA_RUNTIME_API"].startswith("127.0.0.1:")
    assert answer["functionArn"].endswith(":function:gofn")
    assert answer["requestId"]

    # The Invoke API, as boto3 calls it: the function's error in Lambda's shape.
    status, headers, body = invoke(installed, "gofn", {"action": "error"})
    assert status == 200
    assert headers.get("x-amz-function-error") == "Unhandled"
    assert json.loads(body) == {
        "errorMessage": "the function failed on purpose",
        "errorType": "errorString",
    }


def test_awslambdaric_as_the_bootstrap_answers_through_the_gateway(
    e2e_cluster: Cluster, installed: Installed, storage: Relay
) -> None:
    e2e_cluster.apply(manifests("ricfn", "ricfn.zip", storage, handler="handler.echo"))
    ready(e2e_cluster, "ricfn")

    status, _, body = http_get(f"{installed.gateway_url}/ricfn", timeout=120)
    assert status == 200, pod_log(e2e_cluster, "ricfn") + body.decode(errors="replace")[:2000]
    answer = json.loads(body)
    assert answer["handler"] == "handler.echo"
    assert answer["runtime_api"].startswith("127.0.0.1:")
    assert answer["function_arn"].endswith(":function:ricfn")
    assert 0 < answer["remaining_ms"] <= 30_000
    assert answer["request_id"]

    status, headers, body = invoke(installed, "ricfn", {"fail": True})
    assert status == 200
    assert headers.get("x-amz-function-error") == "Unhandled"
    error = json.loads(body)
    assert error["errorType"] == "ValueError"
    assert error["errorMessage"] == "the handler failed on purpose"


def pod_log(e2e_cluster: Cluster, name: str) -> str:
    """The function's pods' logs, for a failure's message."""
    done = e2e_cluster.kubectl(
        "logs",
        "-n",
        FUNCTIONS_NAMESPACE,
        "-l",
        f"kubelambda.dev/function={name}",
        "--all-containers",
        "--tail=80",
        check=False,
        timeout=30,
    )
    return f"pod log:\n{done.stdout}{done.stderr}\n"


def invoke(
    installed: Installed, name: str, event: dict[str, Any]
) -> tuple[int, dict[str, str], str]:
    """POST to the Invoke API (the Function takes anonymous callers)."""
    answer = httpx.post(
        f"{installed.gateway_url}/2015-03-31/functions/{FUNCTIONS_NAMESPACE}.{name}/invocations",
        content=json.dumps(event),
        timeout=120,
    )
    return answer.status_code, dict(answer.headers), answer.text
