"""What the operator keeps of an object's managedFields, and how the fields its create set are
handed to its server-side apply.

The controller creates each object it owns with a POST (``OwnedObjects.ensure``, owned.py): one
request, where an apply would need a GET first to tell "absent" from "someone else's". The API
server records a POST's fields under an entry of operation Update, and server-side apply only
removes the fields its own (Apply) entry owns: left so, a field that a later spec drops would
stay. So before its first apply, an object's creation entry becomes the controller's Apply
entry (``applied_entries``; kubectl's upgrade from client-side apply does the same): from then
on each apply removes what it no longer sets. Objects applied from the start have no such entry.

The store (store.py) keeps only what the reconcilers read (``slim_managed_fields``): the owners
of a Deployment's replicas (replicas.py) and whether the creation entry is still there.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubelambda.controller.config import FIELD_MANAGER
from kubelambda.controller.replicas import replicas_owners

__all__ = ["applied_entries", "created_not_applied", "slim_managed_fields"]

_CREATED = (FIELD_MANAGER, "Update")
_APPLIED = (FIELD_MANAGER, "Apply")


def _owners(obj: Mapping[str, Any]) -> set[tuple[str, str]]:
    entries = (obj.get("metadata") or {}).get("managedFields") or ()
    return {
        (str(e.get("manager")), str(e.get("operation")))
        for e in entries
        if not e.get("subresource")
    }


def created_not_applied(obj: Mapping[str, Any]) -> bool:
    """True when the fields the controller's create set are not yet its apply's."""
    owners = _owners(obj)
    return _CREATED in owners and _APPLIED not in owners


def applied_entries(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``entries`` (an object's whole managedFields) with the controller's creation entry made
    its Apply entry: same fields, same time."""
    return [
        {**e, "operation": "Apply"}
        if (e.get("manager"), e.get("operation")) == _CREATED and not e.get("subresource")
        else e
        for e in entries
    ]


def slim_managed_fields(obj: Mapping[str, Any]) -> dict[str, Any]:
    """``obj`` with managedFields cut down to the replicas owners and the controller's creation
    entry (without its fields), to keep the watch cache small; ``replicas_owners`` and
    ``created_not_applied`` read the result as they read the full list."""
    meta = obj.get("metadata") or {}
    slim = [
        {"manager": manager, "operation": operation, "fieldsV1": {"f:spec": {"f:replicas": {}}}}
        for manager, operation in sorted(replicas_owners(obj))
    ]
    if created_not_applied(obj) and not any(
        (e["manager"], e["operation"]) == _CREATED for e in slim
    ):
        slim.append({"manager": FIELD_MANAGER, "operation": "Update", "fieldsV1": {}})
    rest = {k: v for k, v in meta.items() if k != "managedFields"}
    return {**obj, "metadata": {**rest, "managedFields": slim} if slim else rest}
