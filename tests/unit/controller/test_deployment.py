"""resources/deployment.py: the Deployment of a Function, checked field by field as data."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from kubelambda.api import parse_function
from kubelambda.api.labels import CODE_HASH_ANNOTATION
from kubelambda.controller.config import ControllerConfig
from kubelambda.controller.resources.code import CodeMount
from kubelambda.controller.resources.deployment import (
    ENV_CODE_LIMIT,
    announce_secret,
    cpu_request,
    function_deployment,
    runtime_env,
    with_replicas,
)
from kubelambda.controller.resources.meta import Owner
from unit.controller.conftest import RUNTIME_IMAGE

MakeFunction = Callable[..., dict[str, Any]]
HELLO_CODE = CodeMount("hello-code", (("app.py", "app.py"),))


def build(
    manifest: dict[str, Any],
    config: ControllerConfig,
    *,
    code: CodeMount | None = HELLO_CODE,
    code_hash: str | None = "sha256:abc",
) -> dict[str, Any]:
    function = parse_function(manifest)
    owner = Owner(name=function.name, namespace=function.namespace, uid="uid-1")
    return function_deployment(
        function, owner=owner, image=RUNTIME_IMAGE, code=code, code_hash=code_hash, config=config
    )


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def env_of(deployment: dict[str, Any]) -> dict[str, Any]:
    return {
        var["name"]: var.get("value", var.get("valueFrom")) for var in container(deployment)["env"]
    }


def test_runs_the_image_with_the_runtime_contract(
    make_function: MakeFunction, config: ControllerConfig
) -> None:
    deployment = build(make_function(memoryMB=512, timeoutSeconds=30, concurrency=4), config)
    main = container(deployment)
    assert main["image"] == RUNTIME_IMAGE
    assert main["imagePullPolicy"] == "IfNotPresent"
    assert main["ports"] == [
        {"name": "http", "containerPort": 8080, "protocol": "TCP"},
        {"name": "metrics", "containerPort": 9102, "protocol": "TCP"},
    ]
    assert main["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert env_of(deployment) == {
        "_HANDLER": "app.handler",
        "LAMBDA_TASK_ROOT": "/var/task",
        "AWS_LAMBDA_FUNCTION_NAME": "hello",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
        "AWS_LAMBDA_FUNCTION_TIMEOUT": "30",
        "AWS_REGION": "eu-west-1",
        "KUBELAMBDA_ACCOUNT_ID": "123456789012",
        "KUBELAMBDA_NAMESPACE": "team-a",
        "KUBELAMBDA_CONCURRENCY": "4",
        "KUBELAMBDA_PORT": "8080",
        "KUBELAMBDA_METRICS_PORT": "9102",
    }


def test_user_env_follows_the_runtimes_and_keeps_value_from(
    make_function: MakeFunction, config: ControllerConfig
) -> None:
    env = [
        {"name": "GREETING", "value": "hi"},
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "api", "key": "token"}}},
        {"name": "AWS_REGION", "value": "ap-south-1"},
    ]
    names = [var["name"] for var in container(build(make_function(env=env), config))["env"]]
    assert names[-3:] == ["GREETING", "TOKEN", "AWS_REGION"]
    assert names.count("AWS_REGION") == 1  # the user's region replaces ours
    assert container(build(make_function(env=env), config))["env"][-2] == {
        "name": "TOKEN",
        "valueFrom": {"secretKeyRef": {"name": "api", "key": "token"}},
    }


def test_an_image_without_a_handler_keeps_its_own(
    make_function: MakeFunction, config: ControllerConfig
) -> None:
    manifest = make_function(runtime=None, handler=None, code=None, image="localhost/fn:1")
    deployment = build(manifest, config, code=None, code_hash=None)
    assert "_HANDLER" not in env_of(deployment)
    assert CODE_HASH_ANNOTATION not in deployment["spec"]["template"]["metadata"]["annotations"]
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    assert [v["name"] for v in volumes] == ["tmp"]


@pytest.mark.parametrize(
    ("memory_mb", "memory", "cpu"),
    [
        (128, "128Mi", "73m"),
        (1024, "1Gi", "579m"),  # written as the API server writes quantities back
        (1536, "1536Mi", "869m"),
        (1769, "1769Mi", "1"),
        (3538, "3538Mi", "2"),
        (10240, "10Gi", "5789m"),
    ],
)
def test_memory_is_request_and_limit_and_cpu_follows_lambdas_ratio(
    make_function: MakeFunction, config: ControllerConfig, memory_mb: int, memory: str, cpu: str
) -> None:
    resources = container(build(make_function(memoryMB=memory_mb), config))["resources"]
    assert resources == {"requests": {"memory": memory, "cpu": cpu}, "limits": {"memory": memory}}
    assert cpu_request(memory_mb) == cpu


def test_the_pod_is_hardened(make_function: MakeFunction, config: ControllerConfig) -> None:
    deployment = build(make_function(), config)
    pod = deployment["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["enableServiceLinks"] is False
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert container(deployment)["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }


def test_code_is_mounted_read_only_at_the_task_root_and_tmp_is_writable(
    make_function: MakeFunction, config: ControllerConfig
) -> None:
    code = CodeMount("hello-code", (("app.py", "app.py"), ("pkg.util.py", "pkg/util.py")))
    deployment = build(make_function(), config, code=code)
    pod = deployment["spec"]["template"]["spec"]
    assert pod["volumes"] == [
        {"name": "tmp", "emptyDir": {"sizeLimit": "512Mi"}},
        {
            "name": "code",
            "configMap": {
                "name": "hello-code",
                "items": [
                    {"key": "app.py", "path": "app.py"},
                    {"key": "pkg.util.py", "path": "pkg/util.py"},
                ],
            },
        },
    ]
    assert container(deployment)["volumeMounts"] == [
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "code", "mountPath": "/var/task", "readOnly": True},
    ]


def test_a_users_configmap_is_mounted_whole(
    make_function: MakeFunction, config: ControllerConfig
) -> None:
    manifest = make_function(code={"configMapRef": {"name": "my-code"}})
    pod = build(manifest, config, code=CodeMount("my-code"))["spec"]["template"]["spec"]
    assert pod["volumes"][1] == {"name": "code", "configMap": {"name": "my-code"}}


def test_the_code_hash_is_in_the_pod_template(
    make_function: MakeFunction, config: ControllerConfig
) -> None:
    one = build(make_function(), config, code_hash="sha256:one")
    two = build(make_function(), config, code_hash="sha256:two")
    assert one["spec"]["template"]["metadata"]["annotations"] == {
        CODE_HASH_ANNOTATION: "sha256:one",
        # Prometheus finds the runtime's metrics port by these.
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "9102",
        "prometheus.io/path": "/metrics",
    }
    assert one["spec"]["template"] != two["spec"]["template"]


def test_replicas_are_left_to_the_autoscaler_but_set_on_creation(
    make_function: MakeFunction, config: ControllerConfig
) -> None:
    deployment = build(make_function(scaling={"minReplicas": 2}), config)
    assert "replicas" not in deployment["spec"]
    created = with_replicas(deployment, 2)
    assert created["spec"]["replicas"] == 2
    assert "replicas" not in deployment["spec"]  # a copy, not an edit


def test_owned_labelled_and_selected_by_function(
    make_function: MakeFunction, config: ControllerConfig
) -> None:
    deployment = build(make_function(), config)
    assert deployment["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "kubelambda.dev/v1alpha1",
            "kind": "Function",
            "name": "hello",
            "uid": "uid-1",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/managed-by"] == "kubelambda"
    assert labels["app.kubernetes.io/name"] == "hello"
    assert deployment["spec"]["selector"] == {"matchLabels": {"kubelambda.dev/function": "hello"}}
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_rollouts_keep_every_ready_pod_and_stopping_pods_finish_their_invocation(
    make_function: MakeFunction, config: ControllerConfig
) -> None:
    deployment = build(make_function(timeoutSeconds=60), config)
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    # The function's timeout, then Lambda's 2 s shutdown phase.
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 62


def test_runtime_env_of_a_function_without_handler_omits_it(
    make_function: MakeFunction, config: ControllerConfig
) -> None:
    function = parse_function(make_function(runtime=None, handler=None, code=None, image="x:1"))
    assert all(var["name"] != "_HANDLER" for var in runtime_env(function, config))


def test_an_announcing_pod_gets_its_url_identity_and_its_functions_key(
    make_function: MakeFunction, config: ControllerConfig
) -> None:
    """docs/contracts.md "Announcements": a starting pod tells the operator it serves, before
    the kubelet reports it, with its Function's key; no token volume (it would cost the pod's
    start the kubelet's volume wait) and still no service-account token."""
    assert "KUBELAMBDA_ANNOUNCE_URL" not in env_of(build(make_function(), config))
    announcing = replace(config, announce_url="http://op.kubelambda.svc:8082/")
    deployment = build(make_function(), announcing, code=SMALL_CODE)
    env = env_of(deployment)
    function = parse_function(make_function())
    assert env["KUBELAMBDA_ANNOUNCE_URL"] == (
        f"http://op.kubelambda.svc:8082/announce/{function.namespace}/{function.name}"
    )
    assert env["KUBELAMBDA_ANNOUNCE_KEY"] == {
        "secretKeyRef": {"name": f"{function.name}-announce", "key": "key", "optional": True}
    }
    assert env["KUBELAMBDA_POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["KUBELAMBDA_POD_IP"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    pod = deployment["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert "volumes" not in pod


def test_the_announcement_key_is_random_owned_and_named_for_the_function() -> None:
    owner = Owner(name="hello", namespace="team-a", uid="uid-1")
    one, two = announce_secret(owner), announce_secret(owner)
    assert one["kind"] == "Secret"
    assert one["metadata"]["name"] == "hello-announce"
    assert one["metadata"]["namespace"] == "team-a"
    assert one["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    key = one["stringData"]["key"]
    assert len(key) >= 40 and key != two["stringData"]["key"]


SMALL_CODE = CodeMount(
    "hello-code",
    (("app.py", "app.py"), ("pkg.util.py", "pkg/util.py")),
    ("def handler(event, context):\n    return 1\n", "X = 'é'\n"),
)


def code_of_size(size: int) -> CodeMount:
    """SMALL_CODE's files with ``size`` bytes between them."""
    return replace(SMALL_CODE, texts=("a" * (size - 1), "b"))


def test_small_inline_code_comes_in_the_environment_and_the_pod_has_no_volume(
    make_function: MakeFunction, config: ControllerConfig
) -> None:
    """docs/contracts.md "Code in the environment": the kubelet starts a pod without volumes
    about 300 ms sooner."""
    deployment = build(make_function(), config, code=SMALL_CODE)
    pod = deployment["spec"]["template"]["spec"]
    assert "volumes" not in pod
    runtime = container(deployment)
    assert "volumeMounts" not in runtime
    env = env_of(deployment)
    assert env["KUBELAMBDA_CODE_FILES"] == '["app.py","pkg/util.py"]'
    # Literal values: the pod refers to no object (not even the code ConfigMap, which such a
    # Function does not get), so it never waits for the node to be allowed to read one.
    assert env["KUBELAMBDA_CODE_0"] == "def handler(event, context):\n    return 1\n"
    assert env["KUBELAMBDA_CODE_1"] == "X = 'é'\n"
    assert not any("valueFrom" in var for var in runtime["env"] if "CODE" in var["name"])
    # /tmp is the container's own: a writable root, bounded as the emptyDir was.
    assert runtime["securityContext"]["readOnlyRootFilesystem"] is False
    assert runtime["securityContext"]["runAsNonRoot"] is True
    assert runtime["resources"]["limits"]["ephemeral-storage"] == "512Mi"
    assert runtime["resources"]["requests"]["ephemeral-storage"] == "0"


@pytest.mark.parametrize(
    ("why", "spec", "code", "config_change"),
    [
        ("over the limit", {}, code_of_size(ENV_CODE_LIMIT + 1), {}),
        ("a user's ConfigMap, of unknown size", {}, CodeMount("my-code"), {}),
        ("a custom image", {"runtime": None, "image": "x:1"}, SMALL_CODE, {}),
        ("a read-only root asked for", {}, SMALL_CODE, {"read_only_root": True}),
    ],
)
def test_other_code_is_mounted_on_a_read_only_root(
    make_function: MakeFunction,
    config: ControllerConfig,
    why: str,
    spec: dict[str, Any],
    code: CodeMount,
    config_change: dict[str, Any],
) -> None:
    deployment = build(make_function(**spec), replace(config, **config_change), code=code)
    runtime = container(deployment)
    assert {"name": "code", "mountPath": "/var/task", "readOnly": True} in runtime[
        "volumeMounts"
    ], why
    assert runtime["securityContext"]["readOnlyRootFilesystem"] is True, why
    assert "ephemeral-storage" not in runtime["resources"]["limits"], why
    assert not any(v["name"].startswith("KUBELAMBDA_CODE") for v in runtime["env"]), why


def test_code_at_the_limit_still_comes_in_the_environment(
    make_function: MakeFunction, config: ControllerConfig
) -> None:
    deployment = build(make_function(), config, code=code_of_size(ENV_CODE_LIMIT))
    assert "volumes" not in deployment["spec"]["template"]["spec"]
