"""Who owns a Deployment's ``spec.replicas``, read from its managedFields.

The controller sets replicas only when it creates a Deployment, and hands the field to
REPLICAS_MANAGER before it applies that Deployment again: were it still the only owner, that
apply, without replicas, would reset them to 1. The Function reconciler asks
``needs_handover`` before each such apply, so an interrupted handover resumes; until then
the autoscaler's first scale (or ``kubectl scale``) takes the field over by itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubelambda.controller.config import FIELD_MANAGER

__all__ = ["needs_handover", "replicas_claim", "replicas_owners"]


def _owns_replicas(entry: Mapping[str, Any]) -> bool:
    fields = entry.get("fieldsV1") or {}
    spec = fields.get("f:spec") if isinstance(fields, Mapping) else None
    return isinstance(spec, Mapping) and "f:replicas" in spec


def replicas_owners(deployment: Mapping[str, Any]) -> set[tuple[str, str]]:
    """(manager, operation) pairs that own spec.replicas."""
    entries = (deployment.get("metadata") or {}).get("managedFields") or ()
    return {
        (str(entry.get("manager")), str(entry.get("operation")))
        for entry in entries
        if _owns_replicas(entry)
    }


def needs_handover(deployment: Mapping[str, Any]) -> bool:
    """True when only the controller's apply owns spec.replicas."""
    return replicas_owners(deployment) == {(FIELD_MANAGER, "Apply")}


def replicas_claim(deployment: Mapping[str, Any]) -> dict[str, Any]:
    """What REPLICAS_MANAGER applies to take spec.replicas over at its current value."""
    meta = deployment["metadata"]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
        "spec": {"replicas": deployment["spec"]["replicas"]},
    }
