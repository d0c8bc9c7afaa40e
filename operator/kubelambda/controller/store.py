"""The operator's copy of the objects it watches, fed by kopf's watch events and by the answers
to its own writes; the reconcilers read it instead of asking the API server.

The two feeds race: the answer to a write can come back after the watch has shown a later
change (the Deployment controller's first status, seen before the answer to the replicas
handover), so a copy never replaces a newer one. resourceVersions are compared as the API
server defines them since Kubernetes 1.35 (KEP-5504); versions that do not compare fall
back to "the last copy wins".

Only what the reconcilers need is kept: managedFields are dropped (for Deployments, cut
down to the replicas owners). Objects are kept as compact JSON, several times smaller than
the dicts they decode to, which is what keeps the operator's memory flat with thousands of
Functions; ``get`` decodes a fresh copy, so callers may change what they get.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from typing import Any

from kubelambda.controller.replicas import slim_managed_fields
from kubelambda.kube.kinds import DEPLOYMENT, Kind

__all__ = ["Store", "newer"]

JSON = dict[str, Any]
logger = logging.getLogger(__name__)


def _name_of(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def _decode(encoded: bytes) -> JSON:
    decoded: JSON = json.loads(encoded)
    return decoded


def _ordinal(version: object) -> int | None:
    """A resourceVersion as a number, or None when it is not a comparable one."""
    if not isinstance(version, str) or not (version.isascii() and version.isdigit()):
        return None
    return int(version) if version[0] != "0" else None


def newer(version: object, than: object) -> bool:
    """True when resourceVersion ``version`` is known to be later than ``than`` (two versions of
    one object). Since KEP-5504 (GA in Kubernetes 1.35; etcd revisions before that) they
    are positive integers without leading zeros; anything else is never known to be later."""
    mine, theirs = _ordinal(version), _ordinal(than)
    return mine is not None and theirs is not None and mine > theirs


class Store:
    """Objects by kind, namespace and name. Not thread-safe: used on the event loop only."""

    def __init__(self) -> None:
        self._objects: dict[Kind, dict[tuple[str, str], bytes]] = {}
        self._versions: dict[Kind, dict[tuple[str, str], str]] = {}

    def put(self, kind: Kind, obj: Mapping[str, Any]) -> JSON:
        """Keep a slimmed copy of ``obj`` in place of what was there, and return it; when the
        store already has a newer version, keep and return that one instead. Were the older
        copy kept, the reconcile that follows the newer event would read it, and no later
        event would come to correct it."""
        where = _name_of(obj)
        known = self._versions.get(kind, {}).get(where)
        version = (obj.get("metadata") or {}).get("resourceVersion")
        if newer(known, version):
            logger.debug(
                "%s %s/%s: kept version %s over older %s", kind.kind, *where, known, version
            )
            return _decode(self._objects[kind][where])
        if kind == DEPLOYMENT:
            kept = slim_managed_fields(dict(obj))
        else:
            meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k != "managedFields"}
            kept = {**obj, "metadata": meta}
        encoded = json.dumps(kept, separators=(",", ":")).encode()
        self._objects.setdefault(kind, {})[where] = encoded
        if version is not None:
            self._versions.setdefault(kind, {})[where] = str(version)
        else:
            self._versions.get(kind, {}).pop(where, None)
        return kept

    def holds(self, kind: Kind, obj: Mapping[str, Any]) -> bool:
        """True when the store already has ``obj`` at its resourceVersion or a later one: a
        watch event that only echoes the operator's own write, repeats what was seen, or was
        overtaken by the answer to a later write."""
        version = (obj.get("metadata") or {}).get("resourceVersion")
        known = self._versions.get(kind, {}).get(_name_of(obj))
        return version is not None and (known == str(version) or newer(known, version))

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
