"""Names, labels and owner references shared by every object built for a Function.

Each builder module calls ``object_meta``; the reconciler and the gateway's platform select
a Function's objects with ``FUNCTION_LABEL``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from kubelambda.api import API_VERSION

__all__ = [
    "CODE_HASH_ANNOTATION",
    "FUNCTION_LABEL",
    "MANAGED_BY",
    "MANAGED_BY_LABEL",
    "Owner",
    "code_config_map_name",
    "function_labels",
    "object_meta",
    "owner_reference",
    "pod_selector",
]

MANAGED_BY_LABEL: Final = "app.kubernetes.io/managed-by"
MANAGED_BY: Final = "kubelambda"
FUNCTION_LABEL: Final = "kubelambda.dev/function"
CODE_HASH_ANNOTATION: Final = "kubelambda.dev/code-hash"


@dataclass(frozen=True, slots=True, kw_only=True)
class Owner:
    """The Function that owns an object: its name, namespace and uid (for the owner reference)."""

    name: str
    namespace: str
    uid: str


def code_config_map_name(function_name: str) -> str:
    """The ConfigMap holding a Function's inline code."""
    return f"{function_name}-code"


def function_labels(function_name: str) -> dict[str, str]:
    """Labels of every object built for a Function, and of its pods."""
    return {
        "app.kubernetes.io/name": function_name,
        "app.kubernetes.io/component": "function",
        MANAGED_BY_LABEL: MANAGED_BY,
        FUNCTION_LABEL: function_name,
    }


def pod_selector(function_name: str) -> dict[str, str]:
    """The labels that select a Function's pods. A Deployment's selector is immutable, so this
    stays minimal: one label, the Function's name."""
    return {FUNCTION_LABEL: function_name}


def owner_reference(owner: Owner) -> dict[str, Any]:
    """The Function as controller of the object: garbage collection deletes the object with
    the Function, and foreground deletion waits for it (blockOwnerDeletion)."""
    return {
        "apiVersion": API_VERSION,
        "kind": "Function",
        "name": owner.name,
        "uid": owner.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def object_meta(name: str, owner: Owner) -> dict[str, Any]:
    """metadata of an object owned by ``owner``, in the Function's namespace."""
    return {
        "name": name,
        "namespace": owner.namespace,
        "labels": function_labels(owner.name),
        "ownerReferences": [owner_reference(owner)],
    }
