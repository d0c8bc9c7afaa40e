"""The API calls the reconcilers make, as a Protocol, with an in-memory fake beside it.

``kubelambda.platforms.kubernetes.AsyncKube`` is the real implementation; ``FakeCluster`` lets
the unit tests run reconciles as data, including the server-side-apply rule that bites
replicas: a field its only applier stops applying is reset.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from kubelambda.platforms.kubernetes.errors import Conflict, NotFound
from kubelambda.platforms.kubernetes.events import EventType
from kubelambda.platforms.kubernetes.kinds import DEPLOYMENT, Kind, kind_of

__all__ = ["Cluster", "FakeCluster", "RecordedEvent"]

JSON = dict[str, Any]


class Cluster(Protocol):
    async def get(self, kind: Kind, *, namespace: str, name: str) -> JSON | None:
        """The object, or None when it does not exist."""
        ...

    async def apply(
        self, obj: Mapping[str, Any], *, field_manager: str, force: bool = True
    ) -> JSON:
        """Server-side apply ``obj``; returns the object as stored."""
        ...

    async def create(self, obj: Mapping[str, Any], *, field_manager: str) -> JSON | None:
        """Create ``obj``; None when an object of that name exists (it is left as it is)."""
        ...

    async def set_managed_fields(
        self,
        kind: Kind,
        *,
        namespace: str,
        name: str,
        resource_version: str,
        entries: list[JSON],
    ) -> JSON:
        """Replace the object's managedFields if it is still at ``resource_version`` (else
        Conflict); returns the object."""
        ...

    async def create_once(self, obj: Mapping[str, Any]) -> bool:
        """Create ``obj`` unless it exists (then it is left as it is); True when created."""
        ...

    async def delete(self, kind: Kind, *, namespace: str, name: str, uid: str) -> bool:
        """Delete the object if it is still the one with ``uid``; False when it was gone."""
        ...

    async def patch_status(
        self, kind: Kind, *, namespace: str, name: str, status: Mapping[str, Any]
    ) -> JSON:
        """Merge-patch the status subresource (None values remove keys); returns the object."""
        ...

    async def record_event(
        self, involved: Mapping[str, Any], *, type: EventType, reason: str, message: str
    ) -> None:
        """Post an Event about ``involved``; never raises."""
        ...


@dataclass(frozen=True)
class RecordedEvent:
    name: str
    type: str
    reason: str
    message: str


def _merge(into: JSON, patch: Mapping[str, Any]) -> None:
    for key, value in patch.items():
        if value is None:
            into.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value)


@dataclass
class FakeCluster:
    """Objects in a dict; every write is recorded in ``writes`` as (verb, kind, name), every
    GET in ``reads``."""

    objects: dict[tuple[str, str, str], JSON] = field(default_factory=dict)
    writes: list[tuple[str, str, str]] = field(default_factory=list)
    events: list[RecordedEvent] = field(default_factory=list)
    reads: list[tuple[str, str]] = field(default_factory=list)  # GETs, as (kind, name)
    _versions: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    @staticmethod
    def _key(kind: Kind, namespace: str, name: str) -> tuple[str, str, str]:
        return (str(kind), namespace, name)

    def put(self, obj: Mapping[str, Any]) -> JSON:
        """Store ``obj`` as if someone else created it (uid, resourceVersion, generation set)."""
        stored = copy.deepcopy(dict(obj))
        meta = stored.setdefault("metadata", {})
        meta.setdefault("namespace", "default")
        meta.setdefault("uid", f"uid-{meta['name']}-{next(self._versions)}")
        meta.setdefault("generation", 1)
        meta["resourceVersion"] = str(next(self._versions))
        self.objects[self._key(kind_of(stored), meta["namespace"], meta["name"])] = stored
        return copy.deepcopy(stored)

    def stored(self, kind: Kind, *, namespace: str, name: str) -> JSON | None:
        found = self.objects.get(self._key(kind, namespace, name))
        return copy.deepcopy(found) if found is not None else None

    async def get(self, kind: Kind, *, namespace: str, name: str) -> JSON | None:
        self.reads.append((kind.kind, name))
        return self.stored(kind, namespace=namespace, name=name)

    async def apply(
        self, obj: Mapping[str, Any], *, field_manager: str, force: bool = True
    ) -> JSON:
        kind = kind_of(obj)
        meta = obj["metadata"]
        key = self._key(kind, meta["namespace"], meta["name"])
        self.writes.append(("apply", kind.kind, meta["name"]))
        live = self.objects.get(key)
        if live is None:
            live = {
                "metadata": {"generation": 1, "uid": f"uid-{meta['name']}", "managedFields": []}
            }
        before = copy.deepcopy(live)
        _merge(live, obj)
        if kind == DEPLOYMENT:
            self._own_replicas(live, obj, field_manager)
        if live.get("spec") != before.get("spec") and "resourceVersion" in before["metadata"]:
            live["metadata"]["generation"] = before["metadata"]["generation"] + 1
        if live != before:
            live["metadata"]["resourceVersion"] = str(next(self._versions))
        self.objects[key] = live
        return copy.deepcopy(live)

    async def create(self, obj: Mapping[str, Any], *, field_manager: str) -> JSON | None:
        kind = kind_of(obj)
        meta = obj["metadata"]
        if self._key(kind, meta["namespace"], meta["name"]) in self.objects:
            return None
        self.writes.append(("create", kind.kind, meta["name"]))
        # What the API server records for a POST: its fields under an Update entry.
        claims = kind == DEPLOYMENT and "replicas" in obj.get("spec", {})
        entry: JSON = {"f:spec": {"f:replicas": {}}} if claims else {"f:metadata": {}}
        created = copy.deepcopy(dict(obj))
        created["metadata"]["managedFields"] = [
            {"manager": field_manager, "operation": "Update", "fieldsV1": entry}
        ]
        return self.put(created)

    async def set_managed_fields(
        self,
        kind: Kind,
        *,
        namespace: str,
        name: str,
        resource_version: str,
        entries: list[JSON],
    ) -> JSON:
        live = self.objects.get(self._key(kind, namespace, name))
        if live is None:
            raise NotFound(404, "NotFound", f"{kind} {namespace}/{name} not found")
        if live["metadata"]["resourceVersion"] != resource_version:
            raise Conflict(409, "Conflict", f"{kind} {namespace}/{name} has been modified")
        self.writes.append(("managedFields", kind.kind, name))
        live["metadata"]["managedFields"] = copy.deepcopy(entries)
        live["metadata"]["resourceVersion"] = str(next(self._versions))
        return copy.deepcopy(live)

    async def create_once(self, obj: Mapping[str, Any]) -> bool:
        meta = obj["metadata"]
        key = self._key(kind_of(obj), meta["namespace"], meta["name"])
        if key in self.objects:
            return False
        self.writes.append(("create", kind_of(obj).kind, meta["name"]))
        self.put(obj)
        return True

    async def delete(self, kind: Kind, *, namespace: str, name: str, uid: str) -> bool:
        key = self._key(kind, namespace, name)
        live = self.objects.get(key)
        if live is None:
            return False
        if live["metadata"].get("uid") != uid:
            raise Conflict(409, "Conflict", f"{kind} {namespace}/{name}: uid precondition failed")
        self.writes.append(("delete", kind.kind, name))
        del self.objects[key]
        return True

    @staticmethod
    def _own_replicas(live: JSON, applied: Mapping[str, Any], manager: str) -> None:
        entries: list[JSON] = live["metadata"].setdefault("managedFields", [])
        mine = [e for e in entries if e["manager"] == manager and e["operation"] == "Apply"]
        claims = "replicas" in applied.get("spec", {})
        for entry in mine:
            entries.remove(entry)
        if claims:
            entries.append(
                {
                    "manager": manager,
                    "operation": "Apply",
                    "fieldsV1": {"f:spec": {"f:replicas": {}}},
                }
            )
        elif mine and not entries:
            live["spec"]["replicas"] = 1  # no owner left: the server resets it to its default

    def scale(self, *, namespace: str, name: str, replicas: int, manager: str) -> None:
        """What the autoscaler's write through /scale does: take replicas over."""
        live = self.objects[self._key(DEPLOYMENT, namespace, name)]
        live["spec"]["replicas"] = replicas
        live["metadata"]["managedFields"] = [
            {"manager": manager, "operation": "Update", "fieldsV1": {"f:spec": {"f:replicas": {}}}}
        ]
        live["metadata"]["resourceVersion"] = str(next(self._versions))

    async def patch_status(
        self, kind: Kind, *, namespace: str, name: str, status: Mapping[str, Any]
    ) -> JSON:
        live = self.objects.get(self._key(kind, namespace, name))
        if live is None:
            raise NotFound(404, "NotFound", f"{kind} {namespace}/{name} not found")
        self.writes.append(("status", kind.kind, name))
        _merge(live.setdefault("status", {}), status)
        live["metadata"]["resourceVersion"] = str(next(self._versions))
        return copy.deepcopy(live)

    async def record_event(
        self, involved: Mapping[str, Any], *, type: EventType, reason: str, message: str
    ) -> None:
        self.events.append(RecordedEvent(involved["metadata"]["name"], type, reason, message))
