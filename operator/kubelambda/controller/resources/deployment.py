"""The Deployment that runs a Function: the runtime image, its code at the task root (a
ConfigMap, or a package and layers an init container fetches), Lambda's environment, memory
and a proportional CPU share, and a hardened pod.

The Function reconciler applies what ``function_deployment`` returns. It never carries
``spec.replicas`` (the autoscaler owns that); ``with_replicas`` adds it for the first creation.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Final

from kubelambda.api import Function
from kubelambda.api.environment import (
    INVOKE_PORT,
    METRICS_PORT,
    TASK_ROOT,
    runtime_environment,
    stop_grace_seconds,
)
from kubelambda.api.labels import CODE_HASH_ANNOTATION, function_labels, pod_selector
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
    "METRICS_PORT",
    "PORT",
    "TASK_ROOT",
    "cpu_request",
    "function_deployment",
    "memory_quantity",
    "runtime_env",
    "with_replicas",
]

CONTAINER: Final = "function"
# A token only the operator accepts (its audience), proving "I am this pod" in an announcement.
ANNOUNCE_AUDIENCE: Final = "kubelambda.dev/announce"
ANNOUNCE_TOKEN_DIR: Final = "/var/run/kubelambda/announce"
ANNOUNCE_TOKEN_SECONDS: Final = 600  # the shortest the API server issues; the kubelet renews it
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


def announce_parts(
    function: Function, config: ControllerConfig
) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
    """What lets a starting pod announce itself (docs/contracts.md "Announcements"): its
    env, and the token's volume and mount. The kubelet reports a pod's address only at its
    next relist, up to a second after the runtime answers."""
    base = (config.announce_url or "").rstrip("/")
    url = f"{base}/announce/{function.namespace}/{function.name}"
    env: list[dict[str, Any]] = [
        {"name": "KUBELAMBDA_ANNOUNCE_URL", "value": url},
        {"name": "KUBELAMBDA_ANNOUNCE_TOKEN_FILE", "value": f"{ANNOUNCE_TOKEN_DIR}/token"},
        {"name": "KUBELAMBDA_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "KUBELAMBDA_POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
    ]
    volume: dict[str, Any] = {
        "name": "announce",
        "projected": {
            "sources": [
                {
                    "serviceAccountToken": {
                        "audience": ANNOUNCE_AUDIENCE,
                        "expirationSeconds": ANNOUNCE_TOKEN_SECONDS,
                        "path": "token",
                    }
                }
            ]
        },
    }
    mount: dict[str, Any] = {"name": "announce", "mountPath": ANNOUNCE_TOKEN_DIR, "readOnly": True}
    return env, volume, mount


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
    volumes, mounts = _volumes(code)
    memory = memory_quantity(function.memory_mb)
    requests = {"memory": memory, "cpu": cpu_request(function.memory_mb)}
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
    env = runtime_env(function, config)
    if config.announce_url:
        announce_env, announce_volume, announce_mount = announce_parts(function, config)
        env = env + announce_env
        volumes, mounts = [*volumes, announce_volume], [*mounts, announce_mount]
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": image,
        "imagePullPolicy": config.image_pull_policy,
        "env": env,
        "ports": runtime_ports(),
        "readinessProbe": readiness_probe("http"),
        "resources": {
            "requests": dict(requests),
            "limits": {"memory": memory},
        },
        "securityContext": copy.deepcopy(CONTAINER_SECURITY),
        "volumeMounts": mounts,
    }
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
        "volumes": volumes,
    }
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
    """A copy of ``deployment`` with ``spec.replicas``: only for creating it."""
    created = copy.deepcopy(deployment)
    created["spec"]["replicas"] = replicas
    return created
