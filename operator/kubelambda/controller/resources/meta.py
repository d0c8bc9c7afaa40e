"""Names and owner references shared by every object built for a Function.

Each builder module calls ``object_meta``; the labels themselves are the function
contract's (``kubelambda.api.labels``), which the platforms select by.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubelambda.api import API_VERSION
from kubelambda.api.labels import function_labels

__all__ = [
    "Owner",
    "code_config_map_name",
    "object_meta",
    "owner_reference",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Owner:
    """The Function that owns an object: its name, namespace and uid (for the owner reference)."""

    name: str
    namespace: str
    uid: str


def code_config_map_name(function_name: str) -> str:
    """The ConfigMap holding a Function's inline code."""
    return f"{function_name}-code"


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
