"""The operator's copy of the objects it watches, fed by kopf's watch events and by the answers
to its own writes; the reconcilers read it instead of asking the API server.

Only what the reconcilers need is kept: managedFields are dropped (for Deployments, cut
down to the replicas owners). Objects are kept as compact JSON, several times smaller than
the dicts they decode to, which is what keeps the operator's memory flat with thousands of
Functions; ``get`` decodes a fresh copy, so callers may change what they get.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from kubelambda.controller.replicas import slim_managed_fields
from kubelambda.kube.kinds import DEPLOYMENT, Kind

__all__ = ["Store"]

JSON = dict[str, Any]


def _name_of(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def _decode(encoded: bytes) -> JSON:
    decoded: JSON = json.loads(encoded)
    return decoded


class Store:
    """Objects by kind, namespace and name. Not thread-safe: used on the event loop only."""

    def __init__(self) -> None:
        self._objects: dict[Kind, dict[tuple[str, str], bytes]] = {}
        self._versions: dict[Kind, dict[tuple[str, str], str]] = {}

    def put(self, kind: Kind, obj: Mapping[str, Any]) -> JSON:
        """Keep a slimmed copy of ``obj`` in place of what was there. A watch event older than
        the operator's own write may land after it; the next reconcile then re-applies (a no-op
        on the server) and the event of that apply brings the copy up to date."""
        if kind == DEPLOYMENT:
            kept = slim_managed_fields(dict(obj))
        else:
            meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k != "managedFields"}
            kept = {**obj, "metadata": meta}
        encoded = json.dumps(kept, separators=(",", ":")).encode()
        where = _name_of(kept)
        self._objects.setdefault(kind, {})[where] = encoded
        version = (kept.get("metadata") or {}).get("resourceVersion")
        if version is not None:
            self._versions.setdefault(kind, {})[where] = str(version)
        else:
            self._versions.get(kind, {}).pop(where, None)
        return kept

    def holds(self, kind: Kind, obj: Mapping[str, Any]) -> bool:
        """True when the store already has ``obj`` at its resourceVersion: a watch event
        that only echoes the operator's own write (or repeats what was seen)."""
        version = (obj.get("metadata") or {}).get("resourceVersion")
        known = self._versions.get(kind, {}).get(_name_of(obj))
        return version is not None and known == str(version)

    def remove(self, kind: Kind, *, namespace: str, name: str) -> None:
        self._objects.get(kind, {}).pop((namespace, name), None)
        self._versions.get(kind, {}).pop((namespace, name), None)

    def get(self, kind: Kind, *, namespace: str, name: str) -> JSON | None:
        encoded = self._objects.get(kind, {}).get((namespace, name))
        return _decode(encoded) if encoded is not None else None

    def all(self, kind: Kind) -> Iterator[JSON]:
        for encoded in list(self._objects.get(kind, {}).values()):
            yield _decode(encoded)

    def count(self, kind: Kind) -> int:
        return len(self._objects.get(kind, {}))
