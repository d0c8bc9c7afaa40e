"""api/environment.py, rendered by both platforms through the same assertions: the variables a
function's runtime starts with, and how long a stopping instance may take, are the same in
local mode and in the Deployment the controller builds."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kubelambda.api import Function, parse_function
from kubelambda.controller.config import ControllerConfig
from kubelambda.controller.resources.deployment import function_deployment
from kubelambda.controller.resources.meta import Owner
from kubelambda.platforms.local.functions import prepare

REGION = "eu-west-1"
ACCOUNT = "123456789012"


def manifest(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kubelambda.dev/v1alpha1",
        "kind": "Function",
        "metadata": {"name": "hello", "namespace": "team-a"},
        "spec": {
            "runtime": "python3.12",
            "handler": "app.handler",
            "code": {"inline": {"files": {"app.py": "def handler(e, c):\n    return 1\n"}}},
            **spec,
        },
    }


def on_a_cluster(function: Function) -> tuple[dict[str, str], int]:
    config = ControllerConfig(region=REGION, account_id=ACCOUNT)
    owner = Owner(name=function.name, namespace=function.namespace, uid="uid")
    deployment = function_deployment(
        function, owner=owner, image="runtime:test", code=None, code_hash=None, config=config
    )
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    env = {var["name"]: var.get("value", "") for var in container["env"]}
    return env, pod["terminationGracePeriodSeconds"]


def in_local_mode(function: Function, workdir: Path) -> tuple[dict[str, str], int]:
    local = prepare(function, workdir=workdir, region=REGION, account_id=ACCOUNT)
    return dict(local.environment), local.stop_grace_seconds


Render = Callable[[Function, Path], tuple[dict[str, str], int]]
PLATFORMS: list[Render] = [lambda f, _: on_a_cluster(f), in_local_mode]


@pytest.mark.parametrize("render", PLATFORMS, ids=["cluster", "local"])
def test_the_runtime_gets_lambdas_variables(render: Render, tmp_path: Path) -> None:
    env, _ = render(parse_function(manifest(memoryMB=256, timeoutSeconds=30)), tmp_path)
    assert {name: env.get(name) for name in SAME} == {
        "_HANDLER": "app.handler",
        "AWS_LAMBDA_FUNCTION_NAME": "hello",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
        "AWS_LAMBDA_FUNCTION_TIMEOUT": "30",
        "AWS_REGION": REGION,
        "KUBELAMBDA_ACCOUNT_ID": ACCOUNT,
        "KUBELAMBDA_NAMESPACE": "team-a",
        "KUBELAMBDA_CONCURRENCY": "1",
    }
    assert env["LAMBDA_TASK_ROOT"]  # /var/task on a cluster, the code folder locally


SAME = (
    "_HANDLER",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_TIMEOUT",
    "AWS_REGION",
    "KUBELAMBDA_ACCOUNT_ID",
    "KUBELAMBDA_NAMESPACE",
    "KUBELAMBDA_CONCURRENCY",
)


@pytest.mark.parametrize("render", PLATFORMS, ids=["cluster", "local"])
def test_user_variables_follow_and_may_set_only_the_region(render: Render, tmp_path: Path) -> None:
    env_spec = [{"name": "GREETING", "value": "hi"}, {"name": "AWS_REGION", "value": "ap-south-1"}]
    env, _ = render(parse_function(manifest(env=env_spec)), tmp_path)
    assert env["GREETING"] == "hi"
    assert env["AWS_REGION"] == "ap-south-1"


@pytest.mark.parametrize("render", PLATFORMS, ids=["cluster", "local"])
def test_a_stopping_instance_has_the_timeout_then_lambdas_shutdown_phase(
    render: Render, tmp_path: Path
) -> None:
    _, grace = render(parse_function(manifest(timeoutSeconds=45)), tmp_path)
    assert grace == 47


def test_each_platform_says_where_the_code_and_ports_are(tmp_path: Path) -> None:
    function = parse_function(manifest())
    cluster, _ = on_a_cluster(function)
    local, _ = in_local_mode(function, tmp_path)
    assert (cluster["LAMBDA_TASK_ROOT"], cluster["KUBELAMBDA_PORT"]) == ("/var/task", "8080")
    assert cluster["KUBELAMBDA_METRICS_PORT"] == "9102"
    assert Path(local["LAMBDA_TASK_ROOT"]).is_relative_to(tmp_path)
    # Local instances get their port when they start; the runtime limits memory itself.
    assert "KUBELAMBDA_PORT" not in local and local["KUBELAMBDA_MEMORY_RLIMIT"] == "1"
