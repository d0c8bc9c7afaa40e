"""The operator's copy of the objects it watches, fed by kopf's watch events and by the answers
to its own writes; the reconcilers read it instead of asking the API server.

Only what the reconcilers need is kept: managedFields are dropped (for Deployments, cut
down to the replicas owners).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from kubelambda.controller.replicas import slim_managed_fields
from kubelambda.kube.kinds import DEPLOYMENT, Kind

__all__ = ["Store"]

JSON = dict[str, Any]


def _name_of(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


class Store:
    """Objects by kind, namespace and name. Not thread-safe: used on the event loop only."""

    def __init__(self) -> None:
        self._objects: dict[Kind, dict[tuple[str, str], JSON]] = {}

    def put(self, kind: Kind, obj: Mapping[str, Any]) -> JSON:
        """Keep a slimmed copy of ``obj`` in place of what was there. A watch event older than
        the operator's own write may land after it; the next reconcile then re-applies (a no-op
        on the server) and the event of that apply brings the copy up to date."""
        if kind == DEPLOYMENT:
            kept = slim_managed_fields(dict(obj))
        else:
            meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k != "managedFields"}
            kept = {**obj, "metadata": meta}
        self._objects.setdefault(kind, {})[_name_of(kept)] = kept
        return kept

    def remove(self, kind: Kind, *, namespace: str, name: str) -> None:
        self._objects.get(kind, {}).pop((namespace, name), None)

    def get(self, kind: Kind, *, namespace: str, name: str) -> JSON | None:
        return self._objects.get(kind, {}).get((namespace, name))

    def all(self, kind: Kind) -> Iterator[JSON]:
        yield from list(self._objects.get(kind, {}).values())

    def count(self, kind: Kind) -> int:
        return len(self._objects.get(kind, {}))
