"""Deployment packages and layers on a real API server with the repository's CRD and a real MinIO:
the CRD refuses malformed spec.code.s3 and spec.layers at apply (refused_packages.yaml), and the
operator (with --fetch-image) pins the zips into the Deployment's init container, or reports a
refused zip as the Function's condition."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.apiserver import ApiServer
from harness.minio import Minio, minio_for_pytest
from integration.controller.operating import OperatorProcess, get, wait_condition
from kubelambda.api.fetchplan import FetchPlan
from support.zips import make_zip, module_files

pytestmark = pytest.mark.own_operator

API_TESTS = Path(__file__).resolve().parents[2] / "unit" / "api"
CASES: list[dict[str, Any]] = yaml.safe_load((API_TESTS / "refused_packages.yaml").read_text())
FETCH_IMAGE = "localhost/kubelambda:test"
BUCKET = "packages"
APP = make_zip(
    {"app.py": "import six\ndef handler(e, c):\n    return six.PY3\n", **module_files("six")}
)
LAYER = make_zip(module_files("idna", under="python"))


@pytest.mark.parametrize("case", CASES, ids=[case["case"] for case in CASES])
def test_the_crd_refuses_naming_the_field(
    kube_api: ApiServer, crds: None, case: dict[str, Any]
) -> None:
    refused = kube_api.kubectl(
        "apply",
        "-n",
        "default",
        "--dry-run=server",
        "-f",
        "-",
        input=json.dumps(case["manifest"]),
        check=False,
    )

    assert refused.returncode != 0, f"accepted: {refused.stdout}"
    assert case["field"] in refused.stderr, refused.stderr
    assert case.get("message", "") in refused.stderr.replace("\n", " "), refused.stderr


@pytest.fixture(scope="module")
def minio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Minio]:
    for server in minio_for_pytest(tmp_path_factory):
        client = server.client()
        client.create_bucket(Bucket=BUCKET)
        client.put_object(Bucket=BUCKET, Key="app.zip", Body=APP)
        client.put_object(Bucket=BUCKET, Key="layer.zip", Body=LAYER)
        client.put_object(Bucket=BUCKET, Key="slip.zip", Body=make_zip({"../../x.py": "boom"}))
        yield server


@pytest.fixture(scope="module")
def fetching_operator(
    kube_api: ApiServer, crds: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    """An operator of this module's own, told which image fetches packages."""
    running = OperatorProcess(
        kube_api, tmp_path_factory.mktemp("operator-packages"), f"--fetch-image={FETCH_IMAGE}"
    )
    running.start()
    try:
        yield running
    finally:
        running.stop()


def apply(api: ApiServer, namespace: str, minio: Minio, name: str, key: str) -> None:
    def encoded(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    source = {"endpoint": minio.endpoint, "bucket": BUCKET, "credentialsSecret": {"name": "s3"}}
    objects = [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "s3", "namespace": namespace},
            "data": {
                "AWS_ACCESS_KEY_ID": encoded(minio.access_key),
                "AWS_SECRET_ACCESS_KEY": encoded(minio.secret_key),
            },
        },
        {
            "apiVersion": "kubelambda.dev/v1alpha1",
            "kind": "Function",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "runtime": "python3.12",
                "handler": "app.handler",
                "code": {"s3": {**source, "key": key}},
                "layers": [{"s3": {**source, "key": "layer.zip"}}],
            },
        },
    ]
    api.kubectl(
        "apply", "-f", "-", input=json.dumps({"kind": "List", "apiVersion": "v1", "items": objects})
    )


def test_the_deployment_fetches_the_pinned_package_and_layer(
    kube_api: ApiServer, fetching_operator: OperatorProcess, namespace: str, minio: Minio
) -> None:
    apply(kube_api, namespace, minio, "deps", "app.zip")

    function = wait_condition(kube_api, "fn", "deps", namespace, reason="ScaledToZero", timeout=90)

    app_sha = hashlib.sha256(APP).hexdigest()
    assert function["status"]["codeHash"] == f"sha256:{app_sha}"
    deployment = get(kube_api, "deployment", "deps", namespace)
    assert deployment is not None
    pod = deployment["spec"]["template"]["spec"]
    [init] = pod["initContainers"]
    assert init["image"] == FETCH_IMAGE
    plan = FetchPlan.from_json(init["args"][init["args"].index("--plan") + 1])
    assert [(z.target, z.key, z.sha256) for z in plan.zips] == [
        ("task", "app.zip", app_sha),
        ("opt", "layer.zip", hashlib.sha256(LAYER).hexdigest()),
    ]
    [runtime] = pod["containers"]
    mounts = {m["mountPath"]: m.get("readOnly", False) for m in runtime["volumeMounts"]}
    assert mounts["/var/task"] is True and mounts["/opt"] is True
    assert {v["name"] for v in pod["volumes"]} >= {"package", "layers", "fetch-scratch"}


def test_a_zip_slip_package_is_the_functions_condition(
    kube_api: ApiServer, fetching_operator: OperatorProcess, namespace: str, minio: Minio
) -> None:
    apply(kube_api, namespace, minio, "slip", "slip.zip")

    function = wait_condition(
        kube_api, "fn", "slip", namespace, reason="PackageUnsafePath", status="False", timeout=90
    )

    [ready] = [c for c in function["status"]["conditions"] if c["type"] == "Ready"]
    assert "spec.code.s3 (s3://packages/slip.zip): entry '../../x.py'" in ready["message"]
    assert get(kube_api, "deployment", "slip", namespace) is None
