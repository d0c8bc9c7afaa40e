"""api/environment.py with layers: Lambda's paths into /opt (import path, PATH, shared
libraries), a user's own value extended rather than replaced, and nothing new for a function
without layers (its pods do not roll on upgrade)."""

from __future__ import annotations

from typing import Any

from kubelambda.api import parse_function
from kubelambda.api.environment import runtime_environment

LAYERS = [{"s3": {"bucket": "layers", "key": "deps.zip"}}]


def rendered(**spec: Any) -> dict[str, Any]:
    function = parse_function(
        {
            "apiVersion": "kubelambda.dev/v1alpha1",
            "kind": "Function",
            "metadata": {"name": "deps", "namespace": "team-a"},
            "spec": {
                "runtime": "python3.13",
                "handler": "app.handler",
                "code": {"inline": {"files": {"app.py": ""}}},
                **spec,
            },
        }
    )
    env = runtime_environment(function, region="eu-west-1", account_id="123456789012")
    names = [var.name for var in env]
    assert len(names) == len(set(names)), names
    return {var.name: var for var in env}


def test_layers_put_opt_on_the_paths_as_lambda_does() -> None:
    env = rendered(layers=LAYERS)

    assert env["PYTHONPATH"].value == "/opt/python/lib/python3.13/site-packages:/opt/python"
    assert (
        env["PATH"].value == "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/opt/bin"
    )
    assert env["LD_LIBRARY_PATH"].value == "/var/task/lib:/opt/lib"


def test_without_layers_nothing_changes() -> None:
    env = rendered()

    assert not {"PYTHONPATH", "PATH", "LD_LIBRARY_PATH"} & set(env)


def test_a_users_own_paths_come_first_and_the_layers_follow() -> None:
    env = rendered(
        layers=LAYERS,
        env=[
            {"name": "PYTHONPATH", "value": "/var/task/vendor"},
            {"name": "PATH", "value": ""},
        ],
    )

    assert env["PYTHONPATH"].value == (
        "/var/task/vendor:/opt/python/lib/python3.13/site-packages:/opt/python"
    )
    assert env["PATH"].value.endswith(":/opt/bin") and not env["PATH"].value.startswith(":")


def test_a_path_read_from_a_secret_is_left_as_it_is() -> None:
    ref = {"secretKeyRef": {"name": "paths", "key": "pythonpath"}}
    env = rendered(layers=LAYERS, env=[{"name": "PYTHONPATH", "valueFrom": ref}])

    assert env["PYTHONPATH"].value is None and env["PYTHONPATH"].secret_key_ref is not None
    assert env["PATH"].value is not None and env["PATH"].value.endswith(":/opt/bin")
