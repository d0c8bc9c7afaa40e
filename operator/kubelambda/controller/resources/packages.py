"""A Function's deployment package and layers in its pods: the init container that fetches the
zips the controller pinned (``kubelambda.commands.fetch_code`` in the control-plane image), the
emptyDir volumes it fills, and the read-only mounts of the task root and /opt for the runtime.

``function_deployment`` adds what ``fetch_parts`` builds when the Function has spec.code.s3 or
spec.layers; the plan is in the init container's arguments, so a new zip rolls the pods.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from kubelambda.api.environment import OPT_ROOT, TASK_ROOT
from kubelambda.api.fetchplan import FetchPlan, credential_variable
from kubelambda.api.packages import SECRET_KEYS

__all__ = [
    "FETCH_CONTAINER",
    "LAYERS_VOLUME",
    "PACKAGE_VOLUME",
    "RESOLVED_ANNOTATION",
    "SCRATCH_VOLUME",
    "FetchParts",
    "PackageFetch",
    "fetch_parts",
    "recorded_plan",
    "resolved_annotation",
]

FETCH_CONTAINER: Final = "fetch-code"
# On the Deployment (not its pod template): the plan and the Function generation it was
# resolved for. The controller reads each zip again only when the Function changes, as
# Lambda copies a package at UpdateFunctionCode and never looks at the object again.
RESOLVED_ANNOTATION: Final = "kubelambda.dev/packages-resolved"
PACKAGE_VOLUME: Final = "package"
LAYERS_VOLUME: Final = "layers"
SCRATCH_VOLUME: Final = "fetch-scratch"
# 250 MiB unpacked (Lambda's limit, enforced while unpacking) and the filesystem's overhead
# for many small files; a zip is at most 250 MiB while it waits in the scratch volume.
UNPACKED_SIZE: Final = "300Mi"
SCRATCH_SIZE: Final = "256Mi"
# boto3, one zip's central directory and 1 MiB chunks take about 100 MiB: a fetch for a
# function of less memory gets this much.
FETCH_MEMORY_MIB: Final = 256


@dataclass(frozen=True, kw_only=True)
class PackageFetch:
    """What the pods fetch (the pinned plan), with which image, and the region to sign for
    when neither the spec nor a Secret names one."""

    plan: FetchPlan
    image: str
    region: str
    generation: int | None = None


@dataclass(frozen=True)
class FetchParts:
    """The pod template's additions: init containers, volumes, and the runtime's mounts."""

    init_containers: list[dict[str, Any]]
    volumes: list[dict[str, Any]]
    mounts: list[dict[str, Any]]


def _credentials_env(plan: FetchPlan) -> list[dict[str, Any]]:
    """Each Secret's keys as the init container's variables; AWS_REGION may be absent."""
    env = []
    for index, secret in enumerate(plan.secrets):
        for key in SECRET_KEYS:
            ref: dict[str, Any] = {"name": secret, "key": key}
            if key == "AWS_REGION":
                ref["optional"] = True
            env.append(
                {"name": credential_variable(index, key), "valueFrom": {"secretKeyRef": ref}}
            )
    return env


def fetch_parts(
    fetch: PackageFetch,
    *,
    pull_policy: str,
    security_context: dict[str, Any],
    requests: dict[str, str],
    memory_mib: int,
) -> FetchParts:
    """The init container, its volumes and the runtime's read-only mounts for ``fetch``. The
    Secrets reach the init container only: the runtime's environment never holds them.

    It requests what the runtime container requests (``requests``), so the pod asks the
    scheduler for no more than it did without it; its memory limit is the function's
    (``memory_mib``), at least FETCH_MEMORY_MIB."""
    targets = {planned.target for planned in fetch.plan.zips}
    volumes: list[dict[str, Any]] = [
        {"name": SCRATCH_VOLUME, "emptyDir": {"sizeLimit": SCRATCH_SIZE}}
    ]
    fetch_mounts: list[dict[str, Any]] = [{"name": SCRATCH_VOLUME, "mountPath": "/tmp"}]
    mounts: list[dict[str, Any]] = []
    for target, volume, path in (
        ("task", PACKAGE_VOLUME, TASK_ROOT),
        ("opt", LAYERS_VOLUME, OPT_ROOT),
    ):
        if target in targets:
            volumes.append({"name": volume, "emptyDir": {"sizeLimit": UNPACKED_SIZE}})
            fetch_mounts.append({"name": volume, "mountPath": path})
            mounts.append({"name": volume, "mountPath": path, "readOnly": True})
    container: dict[str, Any] = {
        "name": FETCH_CONTAINER,
        "image": fetch.image,
        "imagePullPolicy": pull_policy,
        # Not the image's `kubelambda` entry point: the module runs whatever cli.py lists.
        "command": ["python", "-m", "kubelambda.commands.fetch_code"],
        "args": [
            "--plan",
            fetch.plan.to_json(),
            "--region",
            fetch.region,
            "--task-root",
            TASK_ROOT,
            "--opt-root",
            OPT_ROOT,
            "--scratch",
            "/tmp",
        ],
        "env": _credentials_env(fetch.plan),
        "resources": {
            "requests": dict(requests),
            "limits": {"memory": f"{max(memory_mib, FETCH_MEMORY_MIB)}Mi"},
        },
        "securityContext": security_context,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": fetch_mounts,
    }
    return FetchParts(init_containers=[container], volumes=volumes, mounts=mounts)


def resolved_annotation(fetch: PackageFetch) -> str:
    """The Deployment's record of ``fetch``: its generation and plan."""
    return json.dumps(
        {"generation": fetch.generation, "plan": json.loads(fetch.plan.to_json())},
        sort_keys=True,
        separators=(",", ":"),
    )


def recorded_plan(
    deployment: Mapping[str, Any] | None, *, generation: int | None
) -> FetchPlan | None:
    """The plan a live Deployment records for ``generation``, or None (another generation, none
    recorded, or a record that does not parse: then the zips are read again)."""
    annotations = ((deployment or {}).get("metadata") or {}).get("annotations") or {}
    text = annotations.get(RESOLVED_ANNOTATION)
    if not isinstance(text, str) or generation is None:
        return None
    try:
        record = json.loads(text)
        if record.get("generation") != generation:
            return None
        return FetchPlan.from_json(json.dumps(record["plan"]))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
