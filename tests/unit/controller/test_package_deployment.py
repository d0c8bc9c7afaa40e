"""function_deployment with a package and layers (controller/resources/packages.py), as data:
the init container fetches the pinned plan with the Secrets' keys, the runtime reads the task
root and /opt read-only and gets Lambda's layer paths, and the Deployment records the plan."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from kubelambda.api import parse_function
from kubelambda.api.fetchplan import FetchPlan, PlannedZip
from kubelambda.controller.config import ControllerConfig
from kubelambda.controller.resources.deployment import CONTAINER, function_deployment
from kubelambda.controller.resources.meta import Owner
from kubelambda.controller.resources.packages import (
    FETCH_CONTAINER,
    RESOLVED_ANNOTATION,
    PackageFetch,
    recorded_plan,
)

MakeFunction = Callable[..., dict[str, Any]]
SHA_CODE, SHA_LAYER = "a" * 64, "b" * 64
PLAN = FetchPlan(
    zips=(
        PlannedZip(
            target="task",
            what="spec.code.s3 (s3://code/app.zip)",
            bucket="code",
            key="app.zip",
            sha256=SHA_CODE,
            endpoint="http://minio.storage:9000",
            version_id="v1",
            credentials=0,
        ),
        PlannedZip(
            target="opt",
            what="spec.layers[0].s3 (s3://layers/deps.zip)",
            bucket="layers",
            key="deps.zip",
            sha256=SHA_LAYER,
        ),
    ),
    secrets=("minio",),
)
FETCH = PackageFetch(
    plan=PLAN, image="localhost/kubelambda:0.1.0", region="eu-west-1", generation=3
)
S3_CODE = {"s3": {"bucket": "code", "key": "app.zip", "credentialsSecret": {"name": "minio"}}}
LAYERS = [{"s3": {"bucket": "layers", "key": "deps.zip"}}]


def pod_of(deployment: dict[str, Any]) -> dict[str, Any]:
    pod: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return pod


def build(
    manifest: dict[str, Any], config: ControllerConfig, owner: Owner, fetch: PackageFetch | None
) -> dict[str, Any]:
    return function_deployment(
        parse_function(manifest),
        owner=owner,
        image="runtime:test",
        code=None,
        code_hash=f"sha256:{SHA_CODE}",
        config=config,
        packages=fetch,
    )


def test_the_init_container_fetches_the_pinned_plan(
    make_function: MakeFunction, config: ControllerConfig, owner: Owner
) -> None:
    deployment = build(make_function(code=S3_CODE, layers=LAYERS), config, owner, FETCH)
    pod = pod_of(deployment)

    [init] = pod["initContainers"]
    assert init["name"] == FETCH_CONTAINER and init["image"] == "localhost/kubelambda:0.1.0"
    assert init["command"] == ["python", "-m", "kubelambda.commands.fetch_code"]
    plan = FetchPlan.from_json(init["args"][init["args"].index("--plan") + 1])
    assert plan == PLAN
    assert init["args"][init["args"].index("--region") + 1] == "eu-west-1"
    assert init["securityContext"]["readOnlyRootFilesystem"] is True
    assert {m["mountPath"]: m.get("readOnly", False) for m in init["volumeMounts"]} == {
        "/tmp": False,
        "/var/task": False,
        "/opt": False,
    }


def test_only_the_init_container_sees_the_secret(
    make_function: MakeFunction, config: ControllerConfig, owner: Owner
) -> None:
    pod = pod_of(build(make_function(code=S3_CODE, layers=LAYERS), config, owner, FETCH))
    [init] = pod["initContainers"]
    [runtime] = pod["containers"]

    refs = {var["name"]: var["valueFrom"]["secretKeyRef"] for var in init["env"]}
    assert refs == {
        "KUBELAMBDA_S3_0_AWS_ACCESS_KEY_ID": {"name": "minio", "key": "AWS_ACCESS_KEY_ID"},
        "KUBELAMBDA_S3_0_AWS_SECRET_ACCESS_KEY": {"name": "minio", "key": "AWS_SECRET_ACCESS_KEY"},
        "KUBELAMBDA_S3_0_AWS_REGION": {"name": "minio", "key": "AWS_REGION", "optional": True},
    }
    assert not any("valueFrom" in var for var in runtime["env"])


def test_the_runtime_reads_code_and_layers_read_only_with_lambdas_paths(
    make_function: MakeFunction, config: ControllerConfig, owner: Owner
) -> None:
    pod = pod_of(build(make_function(code=S3_CODE, layers=LAYERS), config, owner, FETCH))
    [runtime] = pod["containers"]
    assert runtime["name"] == CONTAINER

    mounts = {
        m["mountPath"]: (m["name"], m.get("readOnly", False)) for m in runtime["volumeMounts"]
    }
    assert mounts == {
        "/tmp": ("tmp", False),
        "/var/task": ("package", True),
        "/opt": ("layers", True),
    }
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["package"]["emptyDir"] == volumes["layers"]["emptyDir"] == {"sizeLimit": "300Mi"}
    env = {var["name"]: var.get("value") for var in runtime["env"]}
    assert env["PYTHONPATH"] == "/opt/python/lib/python3.12/site-packages:/opt/python"
    assert env["PATH"].endswith(":/opt/bin") and env["PATH"].startswith("/usr/local/")
    assert env["LD_LIBRARY_PATH"] == "/var/task/lib:/opt/lib"


def test_layers_with_inline_code_keep_the_configmap_at_the_task_root(
    make_function: MakeFunction, config: ControllerConfig, owner: Owner
) -> None:
    layers_only = PackageFetch(plan=FetchPlan(zips=(PLAN.zips[1],)), image="i", region="r")
    deployment = function_deployment(
        parse_function(make_function(layers=LAYERS)),
        owner=owner,
        image="runtime:test",
        code=None,
        code_hash=None,
        config=config,
        packages=layers_only,
    )
    pod = pod_of(deployment)

    [init] = pod["initContainers"]
    assert init["env"] == []  # no Secret: unsigned
    assert [m["mountPath"] for m in init["volumeMounts"]] == ["/tmp", "/opt"]
    assert "package" not in {v["name"] for v in pod["volumes"]}


def test_a_function_without_zips_has_no_init_container(
    make_function: MakeFunction, config: ControllerConfig, owner: Owner
) -> None:
    deployment = build(make_function(), config, owner, None)

    assert "initContainers" not in pod_of(deployment)
    assert RESOLVED_ANNOTATION not in deployment["metadata"].get("annotations", {})
    env = {var["name"] for var in pod_of(deployment)["containers"][0]["env"]}
    assert not env & {"PYTHONPATH", "PATH", "LD_LIBRARY_PATH"}


def test_the_deployment_records_the_plan_for_its_generation(
    make_function: MakeFunction, config: ControllerConfig, owner: Owner
) -> None:
    deployment = build(make_function(code=S3_CODE, layers=LAYERS), config, owner, FETCH)

    assert recorded_plan(deployment, generation=3) == PLAN
    assert recorded_plan(deployment, generation=4) is None
    assert recorded_plan(None, generation=3) is None
    # The record is on the Deployment, not its pod template: it never rolls pods by itself.
    template = deployment["spec"]["template"]["metadata"]["annotations"]
    assert RESOLVED_ANNOTATION not in template


@pytest.mark.parametrize(
    "text", ["not json", '{"generation": 3}', '{"generation": 3, "plan": {"zips": [{}]}}']
)
def test_a_record_that_does_not_parse_is_read_again(text: str) -> None:
    deployment = {"metadata": {"annotations": {RESOLVED_ANNOTATION: text}}}

    assert recorded_plan(deployment, generation=3) is None


@pytest.mark.parametrize(("memory", "limit"), [(128, "256Mi"), (1024, "1024Mi")])
def test_the_fetch_asks_the_scheduler_for_no_more_than_the_runtime(
    memory: int,
    limit: str,
    make_function: MakeFunction,
    config: ControllerConfig,
    owner: Owner,
) -> None:
    pod = pod_of(build(make_function(code=S3_CODE, memoryMB=memory), config, owner, FETCH))
    [init] = pod["initContainers"]
    [runtime] = pod["containers"]

    assert init["resources"]["requests"] == runtime["resources"]["requests"]
    assert init["resources"]["limits"] == {"memory": limit}
