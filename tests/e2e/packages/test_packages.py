"""Scenario: a Function whose code is a deployment package on S3 with a third-party module in it,
and whose other dependency comes from a layer (both on a real MinIO that pods reach through a
relay): its pod's init container fetches and unpacks them, the handler imports six from the
task root and idna from /opt, and runs the layer's tool from /opt/bin. A zip-slip package is
the Function's condition, and no pod starts for it."""

from __future__ import annotations

import json
import stat
import time
from collections.abc import Iterator
from typing import Any

import pytest

from e2e.kit import (
    FUNCTIONS_NAMESPACE,
    S3_REGION,
    Installed,
    function_pods,
    http_get,
    wait_for,
    wait_function_ready,
)
from harness.cluster import Cluster
from harness.minio import Minio, minio_server
from harness.relay import Relay, relay
from support.zips import entry, make_zip, module_files

BUCKET = "packages"
HANDLER = """\
import json
import os
import shutil
import subprocess

import idna
import six


def handler(event, context):
    tool = shutil.which("layer-tool")
    return {
        "statusCode": 200,
        "body": json.dumps(
            {
                "six": six.__file__,
                "idna": idna.__file__,
                "encoded": idna.encode("bücher.example").decode(),
                "tool": subprocess.run([tool], capture_output=True, text=True).stdout.strip(),
                "secrets": sorted(k for k in os.environ if "SECRET" in k or "_S3_" in k),
            }
        ),
    }
"""
LAYER = make_zip(
    [
        *module_files("idna", under="python/lib/python3.12/site-packages").items(),
        (entry("bin/layer-tool", mode=stat.S_IFREG | 0o755), "#!/bin/sh\necho from the layer\n"),
    ]
)


@pytest.fixture
def storage(
    e2e_cluster: Cluster, installed: Installed, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Minio, Relay]]:
    """MinIO on loopback with the package, the layer and a zip-slip package, reachable from
    pods through a relay on the node's address."""
    with (
        minio_server(region=S3_REGION, log_dir=tmp_path_factory.mktemp("minio-logs")) as minio,
        relay(e2e_cluster.node_ip) as to_minio,
    ):
        host, port = minio.endpoint.removeprefix("http://").split(":")
        to_minio.target = (host, int(port))
        s3 = minio.client()
        s3.create_bucket(Bucket=BUCKET)
        s3.put_object(
            Bucket=BUCKET, Key="app.zip", Body=make_zip({"app.py": HANDLER, **module_files("six")})
        )
        s3.put_object(Bucket=BUCKET, Key="layer.zip", Body=LAYER)
        s3.put_object(
            Bucket=BUCKET, Key="slip.zip", Body=make_zip({"app.py": HANDLER, "../../evil.py": ""})
        )
        e2e_cluster.apply(
            [
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {"name": "packages-s3", "namespace": FUNCTIONS_NAMESPACE},
                    "stringData": {
                        "AWS_ACCESS_KEY_ID": minio.access_key,
                        "AWS_SECRET_ACCESS_KEY": minio.secret_key,
                    },
                }
            ]
        )
        yield minio, to_minio


def manifests(name: str, key: str, to_minio: Relay) -> list[dict[str, Any]]:
    source = {
        "endpoint": to_minio.url,
        "bucket": BUCKET,
        "credentialsSecret": {"name": "packages-s3"},
    }
    return [
        {
            "apiVersion": "kubelambda.dev/v1alpha1",
            "kind": "Function",
            "metadata": {"name": name, "namespace": FUNCTIONS_NAMESPACE},
            "spec": {
                "runtime": "python3.12",
                "handler": "app.handler",
                "timeoutSeconds": 30,
                "code": {"s3": {**source, "key": key}},
                "layers": [{"s3": {**source, "key": "layer.zip"}}],
            },
        },
        {
            "apiVersion": "kubelambda.dev/v1alpha1",
            "kind": "Trigger",
            "metadata": {"name": f"{name}-http", "namespace": FUNCTIONS_NAMESPACE},
            "spec": {"function": name, "http": {"path": f"/{name}", "methods": ["GET"]}},
        },
    ]


def test_dependencies_from_a_package_and_a_layer_run_in_a_pod(
    e2e_cluster: Cluster, installed: Installed, storage: tuple[Minio, Relay]
) -> None:
    _, to_minio = storage
    e2e_cluster.apply(manifests("deps", "app.zip", to_minio))
    wait_function_ready(e2e_cluster, "deps")
    e2e_cluster.kubectl(
        "wait",
        "trig/deps-http",
        "-n",
        FUNCTIONS_NAMESPACE,
        "--for=condition=Ready",
        "--timeout=60s",
        timeout=70,
    )

    started = time.monotonic()
    status, headers, body = http_get(f"{installed.gateway_url}/deps", timeout=120)
    took = time.monotonic() - started

    assert status == 200, body[:2000]
    answer = json.loads(body)
    assert answer["six"] == "/var/task/six.py"
    assert answer["idna"] == "/opt/python/lib/python3.12/site-packages/idna/__init__.py"
    assert answer["encoded"] == "xn--bcher-kva.example"
    assert answer["tool"] == "from the layer"
    assert answer["secrets"] == []  # the Secret's keys reached the init container only
    [pod] = function_pods(e2e_cluster, "deps")
    [init] = pod["status"]["initContainerStatuses"]
    assert init["state"]["terminated"]["exitCode"] == 0
    print(f"cold start with the package and a layer: {took:.2f} s ({headers.get('server-timing')})")


def test_a_zip_slip_package_starts_no_pod(
    e2e_cluster: Cluster, installed: Installed, storage: tuple[Minio, Relay]
) -> None:
    _, to_minio = storage
    e2e_cluster.apply(manifests("slip", "slip.zip", to_minio))

    def refused() -> dict[str, Any] | None:
        found = e2e_cluster.get("fn", "slip", "-n", FUNCTIONS_NAMESPACE)
        for condition in (found.get("status") or {}).get("conditions", []):
            if condition["type"] == "Ready" and condition["reason"] == "PackageUnsafePath":
                return dict(condition)
        return None

    condition = wait_for(refused, what="Function slip refused for zip slip", timeout=120)
    assert "'../../evil.py' climbs out of the target" in condition["message"]
    assert function_pods(e2e_cluster, "slip") == []
