"""What a Function's and a Trigger's status say, decided from what the reconciler observed.

The reconcilers call ``function_status`` and ``trigger_status`` and write the result through
the status subresource. Ready answers "can this take requests now or by waking up?".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from kubelambda.api import HttpSource, ScheduleSource, Trigger
from kubelambda.api.streams import KafkaSource, QueueSource
from kubelambda.controller.resources.conditions import Condition, find_condition, merge_conditions

__all__ = [
    "FUNCTION_STATUS_KEYS",
    "TRIGGER_STATUS_KEYS",
    "Blocked",
    "BlockedError",
    "DeploymentState",
    "function_conditions",
    "function_status",
    "trigger_source_summary",
    "trigger_status",
]


# The status fields the reconcilers write; others (the autoscaler's) are not theirs to remove.
FUNCTION_STATUS_KEYS: Final = (
    "observedGeneration",
    "conditions",
    "replicas",
    "readyReplicas",
    "url",
    "codeHash",
    "coldStartPath",
    "coldStartReason",
)
# lastTick is the scheduler's.
TRIGGER_STATUS_KEYS: Final = (
    "observedGeneration",
    "conditions",
    "source",
    "url",
    "nextTick",
    "consumer",
)


@dataclass(frozen=True)
class Blocked:
    """Why an object cannot be reconciled now: a CamelCase reason and a message for people."""

    reason: str
    message: str


class BlockedError(Exception):
    """Raised by a reconcile that cannot go on: its status reports ``blocked``; ``recheck``:
    look again later (what it waits for is not watched)."""

    def __init__(self, blocked: Blocked, *, recheck: bool = False) -> None:
        super().__init__(blocked.message)
        self.blocked = blocked
        self.recheck = recheck


@dataclass(frozen=True, kw_only=True)
class DeploymentState:
    """The parts of a live Deployment that the Function's status reports."""

    desired: int
    ready: int
    updated: int
    total: int
    current: bool  # the Deployment controller has seen the latest spec
    failure: str | None  # the Deployment's message when its rollout ran out of time

    @classmethod
    def of(cls, deployment: Mapping[str, Any]) -> DeploymentState:
        spec = deployment.get("spec") or {}
        status = deployment.get("status") or {}
        generation = (deployment.get("metadata") or {}).get("generation")
        progressing = find_condition(status.get("conditions"), "Progressing")
        failure = None
        if progressing is not None and progressing.get("reason") == "ProgressDeadlineExceeded":
            failure = str(progressing.get("message") or "the rollout ran out of time")
        return cls(
            desired=int(spec.get("replicas", 1)),
            ready=int(status.get("readyReplicas") or 0),
            updated=int(status.get("updatedReplicas") or 0),
            total=int(status.get("replicas") or 0),
            current=generation is not None and status.get("observedGeneration") == generation,
            failure=failure,
        )


def _ready(state: DeploymentState, *, min_replicas: int) -> Condition:
    if state.failure is not None:
        return Condition("Ready", "False", "RolloutFailed", state.failure)
    if state.ready > 0:
        return Condition(
            "Ready", "True", "Available", f"{state.ready} of {state.desired} pods ready"
        )
    if state.desired == 0:
        return Condition(
            "Ready", "True", "ScaledToZero", "no pods; the next request starts one (a cold start)"
        )
    if min_replicas == 0:
        # Woken by a request: it waits for the first pod, as it would at zero.
        return Condition(
            "Ready", "True", "Waking", f"starting {state.desired} pod(s) for waiting requests"
        )
    return Condition("Ready", "False", "Starting", f"0 of {state.desired} pods ready")


def _progressing(state: DeploymentState) -> Condition:
    if state.failure is not None:
        return Condition("Progressing", "False", "RolloutFailed", state.failure)
    if not state.current or state.updated < state.desired or state.total > state.desired:
        return Condition(
            "Progressing",
            "True",
            "RollingOut",
            f"{state.updated} of {state.desired} pods run the current code",
        )
    if state.ready < state.desired:
        return Condition(
            "Progressing", "True", "Scaling", f"{state.ready} of {state.desired} pods ready"
        )
    return Condition(
        "Progressing", "False", "Complete", f"{state.desired} pods run the current code"
    )


def function_conditions(
    *, blocked: Blocked | None, deployment: DeploymentState | None, min_replicas: int
) -> tuple[Condition, Condition]:
    """(Ready, Progressing) for a Function."""
    if blocked is not None:
        return (
            Condition("Ready", "False", blocked.reason, blocked.message),
            Condition("Progressing", "False", blocked.reason, blocked.message),
        )
    if deployment is None:
        waiting = "the Deployment does not exist yet"
        return (
            Condition("Ready", "False", "Creating", waiting),
            Condition("Progressing", "True", "Creating", waiting),
        )
    return _ready(deployment, min_replicas=min_replicas), _progressing(deployment)


def function_status(
    *,
    old: Mapping[str, Any] | None,
    generation: int | None,
    blocked: Blocked | None,
    deployment: DeploymentState | None,
    min_replicas: int,
    url: str | None,
    code_hash: str | None,
    now: datetime,
    cold_start: tuple[str, str | None] | None = None,
) -> dict[str, Any]:
    """The whole status of a Function; equal to ``old`` when nothing changed.

    ``replicas`` is what the autoscaler asked for (the Deployment's spec), ``readyReplicas``
    how many pods answer now. Fields the reconciler could not learn keep their old value.
    ``cold_start``: (path, reason) when the operator runs a warm pool (coldStartPath "pool" or
    "deployment", and why not the pool); None without a pool, which leaves both fields out.
    """
    previous = dict(old or {})
    conditions = function_conditions(
        blocked=blocked, deployment=deployment, min_replicas=min_replicas
    )
    status: dict[str, Any] = {
        "observedGeneration": generation,
        "conditions": merge_conditions(
            conditions, previous.get("conditions"), generation=generation, now=now
        ),
        "replicas": deployment.desired if deployment else previous.get("replicas", 0),
        "readyReplicas": deployment.ready if deployment else previous.get("readyReplicas", 0),
        "url": url if url is not None else previous.get("url"),
        "codeHash": code_hash if code_hash is not None else previous.get("codeHash"),
        "coldStartPath": cold_start[0] if cold_start else None,
        "coldStartReason": cold_start[1] if cold_start else None,
    }
    return {key: value for key, value in status.items() if value is not None}


def trigger_source_summary(trigger: Trigger) -> str:
    """One line for `kubectl get trig`: "http GET,POST /hello", "bucket photos/in/*.jpg",
    "queue ORDERS orders.created" or "kafka orders,refunds"."""
    source = trigger.source
    if isinstance(source, HttpSource):
        host = source.host or ""
        return f"http {','.join(source.methods)} {host}{source.path}"
    if isinstance(source, ScheduleSource):
        zone = "" if source.timezone == "UTC" else f" {source.timezone}"
        return f"schedule {source.expression}{zone}"
    if isinstance(source, QueueSource):
        return f"queue {source.stream}" + (f" {source.subject}" if source.subject else "")
    if isinstance(source, KafkaSource):
        return f"kafka {','.join(source.topics)}"
    pattern = f"{source.prefix}*{source.suffix}" if source.prefix or source.suffix else ""
    return f"bucket {source.bucket}" + (f"/{pattern}" if pattern else "")


def trigger_status(
    *,
    old: Mapping[str, Any] | None,
    generation: int | None,
    ready: Condition,
    source: str | None,
    url: str | None,
    now: datetime,
    next_tick: datetime | None = None,
    consumer: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    previous = dict(old or {})
    status: dict[str, Any] = {
        "observedGeneration": generation,
        "conditions": merge_conditions(
            (ready,), previous.get("conditions"), generation=generation, now=now
        ),
        "source": source if source is not None else previous.get("source"),
        "url": url,
        "nextTick": _rfc3339(next_tick) if next_tick is not None else None,
        "consumer": dict(consumer) if consumer is not None else None,
    }
    return {key: value for key, value in status.items() if value is not None}


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
