"""Status conditions in the standard Kubernetes shape: type, status, reason, message,
lastTransitionTime (and observedGeneration). The status builders call ``merge_conditions``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

__all__ = ["Condition", "find_condition", "merge_conditions", "timestamp"]

Status = Literal["True", "False", "Unknown"]


@dataclass(frozen=True)
class Condition:
    type: str
    status: Status
    reason: str
    message: str


def timestamp(now: datetime) -> str:
    """RFC 3339 in UTC, to the second, as the API server writes times."""
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


def find_condition(
    conditions: Iterable[Mapping[str, Any]] | None, type: str
) -> Mapping[str, Any] | None:
    for condition in conditions or ():
        if condition.get("type") == type:
            return condition
    return None


def merge_conditions(
    new: Sequence[Condition],
    old: Iterable[Mapping[str, Any]] | None,
    *,
    generation: int | None,
    now: datetime,
) -> list[dict[str, Any]]:
    """``new`` as status conditions, followed by conditions of other types from ``old`` (another
    writer's). lastTransitionTime moves only when a condition's status changes, so a
    reconcile that finds nothing new writes the same list again (a no-op)."""
    previous = list(old or ())
    merged: list[dict[str, Any]] = []
    for condition in new:
        before = find_condition(previous, condition.type)
        since = timestamp(now)
        if before is not None and before.get("status") == condition.status:
            since = str(before.get("lastTransitionTime") or since)
        entry: dict[str, Any] = {
            "type": condition.type,
            "status": condition.status,
            "reason": condition.reason,
            "message": condition.message,
            "lastTransitionTime": since,
        }
        if generation is not None:
            entry["observedGeneration"] = generation
        merged.append(entry)
    ours = {condition.type for condition in new}
    merged.extend(dict(c) for c in previous if c.get("type") not in ours)
    return merged
