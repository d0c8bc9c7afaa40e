"""The Deployment that runs a Function: the runtime image, its code at the task root (a
ConfigMap, or a package and layers an init container fetches), Lambda's environment, memory
and a proportional CPU share, and a hardened pod.

A pod that mounts any volume waits for the kubelet's volume manager, which looks in 300 ms steps
(about 300 ms of every cold start, measured 484 vs 175 ms to the container's start). So a
Function of a runtime image whose inline code is small gets a pod without volumes: its files
come in the environment (literal values, so the Function has no code ConfigMap; the runtime
writes them to the task root before anything imports them) and /tmp is the container's own,
on a writable root filesystem bounded by an ephemeral-storage limit. Everything else, or every
Function with ``read_only_root``, keeps the ConfigMap mount and a read-only root with /tmp an
emptyDir.

The Function reconciler applies what ``function_deployment`` returns. It never carries
``spec.replicas`` (the autoscaler owns that); ``with_replicas`` adds it for the first creation.
"""

from __future__ import annotations

import copy
import json
import math
import secrets
from typing import Any, Final

from kubelambda.api import Function
from kubelambda.api.environment import (
    INVOKE_PORT,
    METRICS_PORT,
    TASK_ROOT,
    runtime_environment,
    stop_grace_seconds,
)
from kubelambda.api.labels import (
    ANNOUNCE_KEY,
    CODE_HASH_ANNOTATION,
    announce_secret_name,
    function_labels,
    pod_selector,
)
from kubelambda.controller.config import ControllerConfig
from kubelambda.controller.resources.code import CodeMount
from kubelambda.controller.resources.meta import Owner, object_meta
from kubelambda.controller.resources.packages import (
    RESOLVED_ANNOTATION,
    PackageFetch,
    fetch_parts,
    resolved_annotation,
)

__all__ = [
    "CONTAINER",
    "ENV_CODE_LIMIT",
    "METRICS_PORT",
    "PORT",
    "TASK_ROOT",
    "announce_env",
    "announce_secret",
    "code_env",
    "code_in_environment",
    "cpu_request",
    "function_deployment",
    "memory_quantity",
    "runtime_env",
    "with_replicas",
]

CONTAINER: Final = "function"
# Inline code up to this many bytes comes in the environment: Linux takes at most 128 KiB per
# variable (MAX_ARG_STRLEN), with room here for the name and the Function's own variables.
ENV_CODE_LIMIT: Final = 120 * 1024
PORT: Final = INVOKE_PORT
RUNTIME_UID: Final = 10001  # the user of runtime/Dockerfile
TMP_SIZE: Final = "512Mi"  # Lambda's default ephemeral storage
# Lambda gives a function CPU in proportion to its memory: one vCPU at 1,769 MB.
MB_PER_VCPU: Final = 1769


def runtime_ports() -> list[dict[str, Any]]:
    """The ports of a runtime container: invocations and /metrics (a pool pod's too)."""
    return [
        {"name": "http", "containerPort": PORT, "protocol": "TCP"},
        {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"},
    ]


def readiness_probe(port: str) -> dict[str, Any]:
    """GET /healthz on `port`, as often as the kubelet allows: readiness ends a cold start."""
    return {
        "httpGet": {"path": "/healthz", "port": port},
        "periodSeconds": 1,
        "timeoutSeconds": 1,
        "failureThreshold": 3,
    }


def cpu_request(memory_mb: int) -> str:
    """The CPU request for ``memory_mb`` (Lambda's ratio, rounded up to a millicore), written
    as the API server writes it back ("1", not "1000m"). Only a request: a limit would
    throttle a function that could use an idle core."""
    millicores = math.ceil(memory_mb * 1000 / MB_PER_VCPU)
    return str(millicores // 1000) if millicores % 1000 == 0 else f"{millicores}m"


def memory_quantity(memory_mb: int) -> str:
    """``memory_mb`` MiB as the API server writes it back ("1Gi", not "1024Mi"), so that a
    stored Deployment compares equal to a freshly built one."""
    if memory_mb % 1024 == 0:
        return f"{memory_mb // 1024}Gi"
    return f"{memory_mb}Mi"


def runtime_env(function: Function, config: ControllerConfig) -> list[dict[str, Any]]:
    """The container's env: the function contract's variables, then the user's ``spec.env``."""
    return [
        var.to_manifest()
        for var in runtime_environment(function, region=config.region, account_id=config.account_id)
    ]


def announce_env(function: Function, config: ControllerConfig) -> list[dict[str, Any]]:
    """What lets a starting pod announce itself (docs/contracts.md "Announcements"): the URL,
    its name and address, and the Function's key (optional: a pod whose Secret is gone starts
    and waits for its EndpointSlice). The kubelet reports a pod's address only at its next
    relist, up to a second after the runtime answers."""
    base = (config.announce_url or "").rstrip("/")
    url = f"{base}/announce/{function.namespace}/{function.name}"
    key_ref = {"name": announce_secret_name(function.name), "key": ANNOUNCE_KEY, "optional": True}
    return [
        {"name": "KUBELAMBDA_ANNOUNCE_URL", "value": url},
        {"name": "KUBELAMBDA_ANNOUNCE_KEY", "valueFrom": {"secretKeyRef": key_ref}},
        {"name": "KUBELAMBDA_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "KUBELAMBDA_POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
    ]


def announce_secret(owner: Owner) -> dict[str, Any]:
    """The Function's announcement key, made once (a random value; never applied over, so
    the pods started with it keep announcing) and deleted with the Function."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": object_meta(announce_secret_name(owner.name), owner),
        "type": "Opaque",
        "stringData": {ANNOUNCE_KEY: secrets.token_urlsafe(32)},
    }


def code_in_environment(
    function: Function,
    *,
    code: CodeMount | None,
    packages: PackageFetch | None,
    config: ControllerConfig,
) -> bool:
    """Whether the pod starts without volumes, its code in the environment: inline code of at
    most ENV_CODE_LIMIT bytes on a runtime image (whose /tmp and task root the runtime's user
    may write; a custom image's may not be), nothing to fetch, and no read-only root asked for."""
    return (
        not config.read_only_root
        and function.image is None
        and packages is None
        and code is not None
        and code.size is not None
        and code.size <= ENV_CODE_LIMIT
    )


def code_env(code: CodeMount) -> list[dict[str, Any]]:
    """The variables that carry ``code`` (docs/contracts.md "Code in the environment"): the
    file paths, then each file's text. Literal values, not references to the code ConfigMap:
    a pod that refers to no object starts without waiting for the node to be allowed to read
    it, and the Function needs no ConfigMap at all."""
    items = code.items or ()
    paths = json.dumps([path for _, path in items], separators=(",", ":"))
    env: list[dict[str, Any]] = [{"name": "KUBELAMBDA_CODE_FILES", "value": paths}]
    for index, text in enumerate(code.texts or ()):
        env.append({"name": f"KUBELAMBDA_CODE_{index}", "value": text})
    return env


def _volumes(code: CodeMount | None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    volumes: list[dict[str, Any]] = [
        {"name": "tmp", "emptyDir": {"sizeLimit": TMP_SIZE}},
    ]
    mounts: list[dict[str, Any]] = [{"name": "tmp", "mountPath": "/tmp"}]
    if code is not None:
        source: dict[str, Any] = {"name": code.config_map}
        if code.items is not None:
            source["items"] = [{"key": key, "path": path} for key, path in code.items]
        volumes.append({"name": "code", "configMap": source})
        mounts.append({"name": "code", "mountPath": TASK_ROOT, "readOnly": True})
    return volumes, mounts


CONTAINER_SECURITY: Final = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
}


def function_deployment(
    function: Function,
    *,
    owner: Owner,
    image: str,
    code: CodeMount | None,
    code_hash: str | None,
    config: ControllerConfig,
    packages: PackageFetch | None = None,
) -> dict[str, Any]:
    """The Deployment of ``function``, without ``spec.replicas``. ``packages``: the zips an
    init container fetches into the task root (spec.code.s3) and /opt (spec.layers)."""
    memory = memory_quantity(function.memory_mb)
    requests = {"memory": memory, "cpu": cpu_request(function.memory_mb)}
    limits = {"memory": memory}
    security = copy.deepcopy(CONTAINER_SECURITY)
    env = runtime_env(function, config)
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    if code is not None and code_in_environment(
        function, code=code, packages=packages, config=config
    ):
        env = env + code_env(code)
        # /tmp in the container's own layer, bounded as Lambda's (and the emptyDir) are; the
        # runtime's user owns only /tmp and the task root, whose files it leaves read-only.
        security["readOnlyRootFilesystem"] = False
        requests["ephemeral-storage"] = "0"
        limits["ephemeral-storage"] = TMP_SIZE
    else:
        volumes, mounts = _volumes(code)
    init_containers: list[dict[str, Any]] = []
    if packages is not None:
        parts = fetch_parts(
            packages,
            pull_policy=config.image_pull_policy,
            security_context=copy.deepcopy(CONTAINER_SECURITY),
            requests=requests,
            memory_mib=function.memory_mb,
        )
        init_containers, volumes, mounts = (
            parts.init_containers,
            volumes + parts.volumes,
            mounts + parts.mounts,
        )
    if config.announce_url:
        env = env + announce_env(function, config)
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": image,
        "imagePullPolicy": config.image_pull_policy,
        "env": env,
        "ports": runtime_ports(),
        "readinessProbe": readiness_probe("http"),
        "resources": {"requests": dict(requests), "limits": limits},
        "securityContext": security,
    }
    if mounts:
        container["volumeMounts"] = mounts
    # The annotations Prometheus' kubernetes_sd examples (and most installs) scrape by.
    annotations = {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(METRICS_PORT),
        "prometheus.io/path": "/metrics",
    }
    if code_hash is not None:
        annotations[CODE_HASH_ANNOTATION] = code_hash
    template_meta: dict[str, Any] = {
        "labels": function_labels(function.name),
        "annotations": annotations,
    }
    pod: dict[str, Any] = {
        "automountServiceAccountToken": False,
        # Service links would put every Service of the namespace into the
        # handler's environment, which Lambda does not have.
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": stop_grace_seconds(function),
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUNTIME_UID,
            "runAsGroup": RUNTIME_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
    }
    if volumes:
        pod["volumes"] = volumes
    if init_containers:
        pod["initContainers"] = init_containers
    metadata = object_meta(function.name, owner)
    if packages is not None:
        metadata["annotations"] = {RESOLVED_ANNOTATION: resolved_annotation(packages)}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": {
            "selector": {"matchLabels": pod_selector(function.name)},
            "revisionHistoryLimit": 2,
            # Never fewer ready pods than asked for while new code rolls out.
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": {"metadata": template_meta, "spec": pod},
        },
    }


def with_replicas(deployment: dict[str, Any], replicas: int) -> dict[str, Any]:
    """``deployment`` with ``spec.replicas``, sharing the rest: only for creating it."""
    return {**deployment, "spec": {**deployment["spec"], "replicas": replicas}}
