"""The warm pool as data: per namespace and runtime a Deployment of generic runtime pods, the
Secret with their bearer token and the NetworkPolicy that lets only the operator reach their
pool port; which Functions a pool can serve (``cold_start``), what a specialisation sends, and
the patch that turns a claimed pool pod into one of the Function's pods.

The pool manager (controller/pool.py) applies and sends what these return; nothing here
touches the network.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from kubelambda.api import ConfigMapCode, Function, InlineCode
from kubelambda.api.function import S3Object
from kubelambda.api.labels import (
    CODE_HASH_ANNOTATION,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    function_labels,
)
from kubelambda.controller.config import ControllerConfig, WarmPool
from kubelambda.controller.resources.deployment import (
    CONTAINER,
    CONTAINER_SECURITY,
    METRICS_PORT,
    PORT,
    RUNTIME_UID,
    TMP_SIZE,
    cpu_request,
    memory_quantity,
    readiness_probe,
    runtime_ports,
)
from kubelambda.controller.resources.meta import Owner, owner_reference
from kubelambda.controller.resources.networkpolicy import gateway_peer, operator_peer

__all__ = [
    "FROM_POOL_LABEL",
    "POOL_LABEL",
    "POOL_PORT",
    "POOL_SECRET",
    "SPECIALIZED_ANNOTATION",
    "SPECIALIZED_AT_ANNOTATION",
    "TASK_DIR",
    "TOKEN_KEY",
    "ColdStart",
    "Unresolvable",
    "cold_start",
    "env_sources",
    "pool_deployment",
    "pool_name",
    "pool_network_policy",
    "pool_secret",
    "resolved_env",
    "specialize_body",
    "specialized_pod_patch",
]

# On an unclaimed pool pod only: the pool's ReplicaSet selects by it, so dropping it on a claim
# orphans the pod and the ReplicaSet starts a replacement (the pool refills).
POOL_LABEL: Final = "kubelambda.dev/pool"
# On every pod a pool started, claimed or not: the manager lists specialised pods by it.
FROM_POOL_LABEL: Final = "kubelambda.dev/from-pool"
SPECIALIZED_ANNOTATION: Final = "kubelambda.dev/specialized-for"  # "namespace/name"
SPECIALIZED_AT_ANNOTATION: Final = "kubelambda.dev/specialized-at"  # RFC 3339
POOL_SECRET: Final = "kubelambda-pool"
TOKEN_KEY: Final = "token"
POOL_PORT: Final = 8079
TASK_DIR: Final = "/tmp/task"
TASK_SIZE: Final = "32Mi"  # the code of a pool-eligible Function is at most a 1 MiB ConfigMap
POOL_GRACE_SECONDS: Final = (
    30  # an unclaimed pod exits at once; a claimed one is deleted with its own
)


def pool_name(runtime: str) -> str:
    """The pool Deployment of ``runtime`` (python3.12 → kubelambda-pool-python3-12)."""
    return "kubelambda-pool-" + re.sub(r"[^a-z0-9-]+", "-", runtime.lower()).strip("-")


def _labels(runtime: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "kubelambda-pool",
        "app.kubernetes.io/component": "pool",
        MANAGED_BY_LABEL: MANAGED_BY,
        POOL_LABEL: runtime,
        FROM_POOL_LABEL: runtime,
    }


def pool_deployment(
    *, namespace: str, runtime: str, image: str, pool: WarmPool, config: ControllerConfig
) -> dict[str, Any]:
    """The pool of ``runtime`` in ``namespace``: ``pool.size`` pods of the runtime image in pool
    mode, hardened as a function pod is, with the pool's memory as request and limit."""
    memory = memory_quantity(pool.memory_mb)
    container = {
        "name": CONTAINER,
        "image": image,
        "imagePullPolicy": config.image_pull_policy,
        "env": [
            {"name": "KUBELAMBDA_POOL_PORT", "value": str(POOL_PORT)},
            {
                "name": "KUBELAMBDA_POOL_TOKEN",
                "valueFrom": {"secretKeyRef": {"name": POOL_SECRET, "key": TOKEN_KEY}},
            },
            {"name": "KUBELAMBDA_POOL_TASK_DIR", "value": TASK_DIR},
            {"name": "KUBELAMBDA_PORT", "value": str(PORT)},
            {"name": "KUBELAMBDA_METRICS_PORT", "value": str(METRICS_PORT)},
        ],
        "ports": [
            *runtime_ports(),
            {"name": "pool", "containerPort": POOL_PORT, "protocol": "TCP"},
        ],
        # 200 while waiting and once specialised: a claimed pod becomes an endpoint of the
        # Function's Service as soon as its labels say so.
        "readinessProbe": readiness_probe("pool"),
        "resources": {
            "requests": {"memory": memory, "cpu": cpu_request(pool.memory_mb)},
            "limits": {"memory": memory},
        },
        "securityContext": copy.deepcopy(CONTAINER_SECURITY),
        "volumeMounts": [
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "task", "mountPath": TASK_DIR},
        ],
    }
    labels = _labels(runtime)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": pool_name(runtime), "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": pool.size,
            "selector": {"matchLabels": {POOL_LABEL: runtime}},
            "revisionHistoryLimit": 2,
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(METRICS_PORT),
                        "prometheus.io/path": "/metrics",
                    },
                },
                "spec": {
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "terminationGracePeriodSeconds": POOL_GRACE_SECONDS,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": RUNTIME_UID,
                        "runAsGroup": RUNTIME_UID,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [container],
                    "volumes": [
                        {"name": "tmp", "emptyDir": {"sizeLimit": TMP_SIZE}},
                        {"name": "task", "emptyDir": {"sizeLimit": TASK_SIZE}},
                    ],
                },
            },
        },
    }


def pool_secret(*, namespace: str, token: str) -> dict[str, Any]:
    """The pool's bearer token, created once per namespace (never applied over)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": POOL_SECRET,
            "namespace": namespace,
            "labels": {MANAGED_BY_LABEL: MANAGED_BY, "app.kubernetes.io/component": "pool"},
        },
        "type": "Opaque",
        "stringData": {TOKEN_KEY: token},
    }


def pool_network_policy(*, namespace: str, config: ControllerConfig) -> dict[str, Any]:
    """Unclaimed pool pods take connections only from the operator's pods on the pool port and
    from the gateway's on the invoke port, and open none. A claimed pod loses the pool label
    and gains the Function's: the namespace's Functions' policy (kubelambda-functions) is then
    its own."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": POOL_SECRET,
            "namespace": namespace,
            "labels": {MANAGED_BY_LABEL: MANAGED_BY, "app.kubernetes.io/component": "pool"},
        },
        "spec": {
            "podSelector": {"matchExpressions": [{"key": POOL_LABEL, "operator": "Exists"}]},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [
                {
                    "from": [operator_peer(config)],
                    "ports": [{"protocol": "TCP", "port": POOL_PORT}],
                },
                # As the Functions' policy has it: nothing listens there until the pod is
                # specialised, and the gateway connects to a specialised pod at once, while
                # the policy engine may not yet have seen the relabel that moves it from this
                # policy to the Functions'.
                {"from": [gateway_peer(config)], "ports": [{"protocol": "TCP", "port": PORT}]},
            ],
            "egress": [],
        },
    }


# --- which Functions a pool serves ------------------------------------------------------------


@dataclass(frozen=True)
class ColdStart:
    """How a Function at zero gets its first instance (status.coldStartPath), and why not from
    the pool when it cannot (status.coldStartReason)."""

    path: Literal["pool", "deployment"]
    reason: str | None = None


def cold_start(function: Function, *, pool: WarmPool) -> ColdStart:
    """``pool`` when a pool pod can become ``function``'s: its runtime has a pool, the same
    memory, code a pool pod can be sent (inline or a ConfigMap) and an environment that does
    not depend on the pod (fieldRef, resourceFieldRef)."""

    def deployment(reason: str) -> ColdStart:
        return ColdStart("deployment", reason)

    if not pool.enabled:
        return deployment("no warm pool (Helm value warmPool.size is 0)")
    if not pool.serves(function.namespace):
        return deployment(
            f"namespace {function.namespace} has no warm pool"
            f" (pools in: {', '.join(pool.namespaces)})"
        )
    if function.image is not None:
        return deployment("a custom image (spec.image)")
    runtime = function.runtime or ""
    if function.custom_runtime:
        return deployment(f"a custom runtime ({runtime})")
    if runtime not in pool.runtimes:
        return deployment(f"runtime {runtime} has no warm pool (pools: {', '.join(pool.runtimes)})")
    if function.memory_mb != pool.memory_mb:
        return deployment(f"memoryMB {function.memory_mb} differs from the pool's {pool.memory_mb}")
    if isinstance(function.code, S3Object):
        return deployment("code from a package (spec.code.s3)")
    if function.layers:
        return deployment("layers (spec.layers)")
    if not isinstance(function.code, InlineCode | ConfigMapCode):
        return deployment("no code a pool pod can load")
    for var in function.env:
        if var.field_ref is not None or var.resource_field_ref is not None:
            return deployment(f"env {var.name} reads a field of its pod")
    return ColdStart("pool")


# --- what a specialisation sends --------------------------------------------------------------


class Unresolvable(ValueError):
    """A variable's value cannot be read now; a function pod would not start either."""


def env_sources(env: list[dict[str, Any]]) -> set[tuple[Literal["Secret", "ConfigMap"], str]]:
    """The Secrets and ConfigMaps the container's ``env`` reads values from."""
    found: set[tuple[Literal["Secret", "ConfigMap"], str]] = set()
    for var in env:
        source = var.get("valueFrom") or {}
        if "secretKeyRef" in source:
            found.add(("Secret", source["secretKeyRef"]["name"]))
        if "configMapKeyRef" in source:
            found.add(("ConfigMap", source["configMapKeyRef"]["name"]))
    return found


def resolved_env(
    env: list[dict[str, Any]],
    *,
    secrets: Mapping[str, Mapping[str, str] | None],
    config_maps: Mapping[str, Mapping[str, str] | None],
) -> dict[str, str]:
    """``env`` as the kubelet would give it to the container: every valueFrom read from
    ``secrets``/``config_maps`` (name → data as text, None when absent), every $(NAME) in a
    literal value expanded from the variables before it, LAMBDA_TASK_ROOT left out (the pool
    pod's runtime loads the code from its own task directory)."""
    values: dict[str, str] = {}
    for var in env:
        name = var["name"]
        source = var.get("valueFrom")
        if source is None:
            values[name] = _expand(str(var.get("value") or ""), values)
            continue
        kind, ref, data = (
            ("Secret", source["secretKeyRef"], secrets)
            if "secretKeyRef" in source
            else ("ConfigMap", source.get("configMapKeyRef"), config_maps)
        )
        if ref is None:
            raise Unresolvable(f"env {name}: a field of the pod cannot be sent to a pool pod")
        found = data.get(ref["name"])
        value = None if found is None else found.get(ref["key"])
        if value is None:
            if ref.get("optional"):
                continue
            raise Unresolvable(f"env {name}: {kind} {ref['name']} has no key {ref['key']}")
        values[name] = value
    values.pop("LAMBDA_TASK_ROOT", None)
    return values


def _expand(text: str, defined: Mapping[str, str]) -> str:
    """Kubernetes' $(NAME) expansion: a defined name is replaced, an undefined one kept as
    written, and $$ stands for a literal $."""
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "$" and i + 1 < len(text):
            follower = text[i + 1]
            if follower == "$":
                out.append("$")
                i += 2
                continue
            if follower == "(":
                end = text.find(")", i + 2)
                if end != -1:
                    name = text[i + 2 : end]
                    out.append(defined.get(name, f"$({name})"))
                    i = end + 1
                    continue
        out.append(char)
        i += 1
    return "".join(out)


def specialize_body(
    *, namespace: str, name: str, env: Mapping[str, str], files: Mapping[str, str]
) -> dict[str, Any]:
    """The JSON a pool pod's ``POST /_kubelambda/specialize`` takes (docs/contracts.md)."""
    return {"function": f"{namespace}/{name}", "env": dict(env), "files": dict(files)}


def specialized_pod_patch(*, owner: Owner, code_hash: str | None, at: str) -> dict[str, Any]:
    """The merge patch that makes a specialised pool pod one of ``owner``'s pods: out of its
    pool (the pool label dropped, the ReplicaSet no longer its owner), into the Function's
    Service and NetworkPolicy (its pod labels), owned by the Function (deleted with it)."""
    labels: dict[str, str | None] = {POOL_LABEL: None, **function_labels(owner.name)}
    annotations = {
        SPECIALIZED_ANNOTATION: f"{owner.namespace}/{owner.name}",
        SPECIALIZED_AT_ANNOTATION: at,
    }
    if code_hash is not None:
        annotations[CODE_HASH_ANNOTATION] = code_hash
    return {
        "metadata": {
            "labels": labels,
            "annotations": annotations,
            # A merge patch replaces the list: the ReplicaSet's controller reference goes.
            "ownerReferences": [owner_reference(owner)],
        }
    }
