"""resources/pool.py: the warm pool's Deployment, Secret and NetworkPolicy as data, which
Functions a pool serves (a table), the environment a pool pod is sent, and the patch that makes
a claimed pod one of the Function's."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from kubelambda.api import parse_function
from kubelambda.api.labels import CODE_HASH_ANNOTATION, function_labels, pod_selector
from kubelambda.controller.config import ControllerConfig, WarmPool
from kubelambda.controller.resources.deployment import function_deployment
from kubelambda.controller.resources.meta import Owner, owner_reference
from kubelambda.controller.resources.pool import (
    FROM_POOL_LABEL,
    POOL_LABEL,
    POOL_PORT,
    ColdStart,
    Unresolvable,
    cold_start,
    env_sources,
    pool_deployment,
    pool_name,
    pool_network_policy,
    pool_secret,
    resolved_env,
    specialized_pod_patch,
)
from unit.controller.conftest import RUNTIME_IMAGE

MakeFunction = Callable[..., dict[str, Any]]
POOL = WarmPool(size=3, runtimes=("python3.12",), memory_mb=128)


def build(config: ControllerConfig, pool: WarmPool = POOL) -> dict[str, Any]:
    return pool_deployment(
        namespace="team-a", runtime="python3.12", image=RUNTIME_IMAGE, pool=pool, config=config
    )


def test_the_pool_runs_the_runtime_image_in_pool_mode(config: ControllerConfig) -> None:
    deployment = build(config)
    assert deployment["metadata"]["name"] == pool_name("python3.12") == "kubelambda-pool-python3-12"
    assert deployment["metadata"]["namespace"] == "team-a"
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["selector"] == {"matchLabels": {POOL_LABEL: "python3.12"}}
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert labels[POOL_LABEL] == labels[FROM_POOL_LABEL] == "python3.12"
    assert labels["app.kubernetes.io/managed-by"] == "kubelambda"
    assert deployment["metadata"]["labels"] == labels
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == RUNTIME_IMAGE
    env = {var["name"]: var.get("value", var.get("valueFrom")) for var in container["env"]}
    assert env == {
        "KUBELAMBDA_POOL_PORT": "8079",
        "KUBELAMBDA_POOL_TOKEN": {"secretKeyRef": {"name": "kubelambda-pool", "key": "token"}},
        "KUBELAMBDA_POOL_TASK_DIR": "/tmp/task",
        "KUBELAMBDA_PORT": "8080",
        "KUBELAMBDA_METRICS_PORT": "9102",
    }
    assert [(p["name"], p["containerPort"]) for p in container["ports"]] == [
        ("http", 8080),
        ("metrics", 9102),
        ("pool", POOL_PORT),
    ]
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "pool"}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts == {"/tmp": "tmp", "/tmp/task": "task"}


def test_a_pool_pod_is_isolated_as_a_function_pod(
    make_function: MakeFunction, config: ControllerConfig
) -> None:
    pod = build(config)["spec"]["template"]["spec"]
    function = parse_function(make_function())
    theirs = function_deployment(
        function,
        owner=Owner(name="hello", namespace="team-a", uid="u"),
        image=RUNTIME_IMAGE,
        code=None,
        code_hash=None,
        config=config,
    )["spec"]["template"]["spec"]
    for key in ("automountServiceAccountToken", "enableServiceLinks", "securityContext"):
        assert pod[key] == theirs[key], key
    assert pod["automountServiceAccountToken"] is False
    [ours], [their] = pod["containers"], theirs["containers"]
    assert ours["securityContext"] == their["securityContext"]
    assert ours["securityContext"]["readOnlyRootFilesystem"] is True
    # memoryMB 128 as a Function of 128 MB gets it: request = limit, CPU in Lambda's ratio.
    assert ours["resources"] == their["resources"]
    assert ours["resources"]["limits"] == {"memory": "128Mi"}
    big = build(config, replace(POOL, memory_mb=1024))["spec"]["template"]["spec"]
    assert big["containers"][0]["resources"]["requests"]["memory"] == "1Gi"


def test_the_token_secret_and_the_policy_that_admits_only_the_operator(
    config: ControllerConfig,
) -> None:
    secret = pool_secret(namespace="team-a", token="t0ken")
    assert secret["metadata"] == {
        "name": "kubelambda-pool",
        "namespace": "team-a",
        "labels": {
            "app.kubernetes.io/managed-by": "kubelambda",
            "app.kubernetes.io/component": "pool",
        },
    }
    assert secret["stringData"] == {"token": "t0ken"}
    policy = pool_network_policy(namespace="team-a", config=config)
    spec = policy["spec"]
    assert spec["podSelector"] == {"matchExpressions": [{"key": POOL_LABEL, "operator": "Exists"}]}
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert spec["egress"] == []
    [rule, gateway] = spec["ingress"]
    assert gateway == {
        "from": [
            {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kubelambda"}},
                "podSelector": {
                    "matchLabels": {
                        "app.kubernetes.io/name": "kubelambda",
                        "app.kubernetes.io/component": "gateway",
                    }
                },
            }
        ],
        "ports": [{"protocol": "TCP", "port": 8080}],
    }
    assert rule["ports"] == [{"protocol": "TCP", "port": POOL_PORT}]
    assert rule["from"] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kubelambda"}},
            "podSelector": {
                "matchLabels": {
                    "app.kubernetes.io/name": "kubelambda",
                    "app.kubernetes.io/component": "operator",
                }
            },
        }
    ]


S3 = {"s3": {"bucket": "code", "key": "fn.zip"}}
LAYERS = [{"s3": {"bucket": "layers", "key": "deps.zip"}}]
POD_NAME = [{"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]


@pytest.mark.parametrize(
    ("spec", "pool", "expected"),
    [
        ({}, POOL, ColdStart("pool")),
        ({"code": {"configMapRef": {"name": "mine"}}}, POOL, ColdStart("pool")),
        (
            {"env": [{"name": "K", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]},
            POOL,
            ColdStart("pool"),
        ),
        (
            {},
            WarmPool(size=0),
            ColdStart("deployment", "no warm pool (Helm value warmPool.size is 0)"),
        ),
        (
            {"memoryMB": 256},
            POOL,
            ColdStart("deployment", "memoryMB 256 differs from the pool's 128"),
        ),
        (
            {},
            replace(POOL, runtimes=("python3.13",)),
            ColdStart("deployment", "runtime python3.12 has no warm pool (pools: python3.13)"),
        ),
        (
            {"runtime": None, "handler": None, "code": None, "image": "registry.example/fn:1"},
            POOL,
            ColdStart("deployment", "a custom image (spec.image)"),
        ),
        (
            {"runtime": "provided.al2023", "handler": None, "code": S3},
            POOL,
            ColdStart("deployment", "a custom runtime (provided.al2023)"),
        ),
        ({"code": S3}, POOL, ColdStart("deployment", "code from a package (spec.code.s3)")),
        ({"layers": LAYERS}, POOL, ColdStart("deployment", "layers (spec.layers)")),
        ({"env": POD_NAME}, POOL, ColdStart("deployment", "env POD reads a field of its pod")),
        ({}, replace(POOL, namespaces=("team-a", "fns")), ColdStart("pool")),
        (
            {},
            replace(POOL, namespaces=("warm", "other")),
            ColdStart("deployment", "namespace team-a has no warm pool (pools in: warm, other)"),
        ),
    ],
    ids=[
        "inline",
        "configmap",
        "secret-env",
        "no-pool",
        "memory",
        "runtime",
        "image",
        "custom-runtime",
        "package",
        "layers",
        "field-ref",
        "namespace-with-pool",
        "namespace-without",
    ],
)
def test_which_functions_the_pool_serves(
    make_function: MakeFunction, spec: dict[str, Any], pool: WarmPool, expected: ColdStart
) -> None:
    assert cold_start(parse_function(make_function(**spec)), pool=pool) == expected


ENV: list[dict[str, Any]] = [
    {"name": "_HANDLER", "value": "app.handler"},
    {"name": "LAMBDA_TASK_ROOT", "value": "/var/task"},
    {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
    {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}},
    {"name": "URL", "value": "postgres://app:$(DB_PASSWORD)@db/$(MODE)?x=$(UNSET)&$$(MODE)"},
    {
        "name": "OPTIONAL",
        "valueFrom": {"secretKeyRef": {"name": "db", "key": "absent", "optional": True}},
    },
]


def test_the_environment_is_sent_resolved_as_the_kubelet_would_give_it() -> None:
    assert env_sources(ENV) == {("Secret", "db"), ("ConfigMap", "settings")}
    resolved = resolved_env(
        ENV, secrets={"db": {"password": "s3cret"}}, config_maps={"settings": {"mode": "prod"}}
    )
    assert resolved == {
        "_HANDLER": "app.handler",
        "DB_PASSWORD": "s3cret",
        "MODE": "prod",
        "URL": "postgres://app:s3cret@db/prod?x=$(UNSET)&$(MODE)",
    }


@pytest.mark.parametrize(
    ("secrets", "config_maps", "problem"),
    [
        (
            {"db": None},
            {"settings": {"mode": "m"}},
            "env DB_PASSWORD: Secret db has no key password",
        ),
        (
            {"db": {"password": "p"}},
            {"settings": {}},
            "env MODE: ConfigMap settings has no key mode",
        ),
    ],
)
def test_a_value_that_cannot_be_read_is_refused(
    secrets: dict[str, Any], config_maps: dict[str, Any], problem: str
) -> None:
    with pytest.raises(Unresolvable, match=problem):
        resolved_env(ENV, secrets=secrets, config_maps=config_maps)


def test_a_claimed_pod_becomes_one_of_the_functions_pods() -> None:
    owner = Owner(name="hello", namespace="team-a", uid="uid-hello")
    patch = specialized_pod_patch(owner=owner, code_hash="sha256:abc", at="2026-01-02T03:04:05Z")
    meta = patch["metadata"]
    assert meta["labels"] == {POOL_LABEL: None, **function_labels("hello")}
    assert pod_selector("hello").items() <= meta["labels"].items()
    assert FROM_POOL_LABEL not in meta["labels"]  # kept: the pod is still known as a pool's
    assert meta["annotations"] == {
        "kubelambda.dev/specialized-for": "team-a/hello",
        "kubelambda.dev/specialized-at": "2026-01-02T03:04:05Z",
        CODE_HASH_ANNOTATION: "sha256:abc",
    }
    assert meta["ownerReferences"] == [owner_reference(owner)]
