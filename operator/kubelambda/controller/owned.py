"""Writing the objects a Function owns: each one the reconciler builds is created, or applied
again only when the stored copy differs from it, never over someone else's object, and a
Deployment's replicas are handed to the autoscaler's field manager before an apply that
leaves them out; the objects it no longer needs are deleted, and the objects its namespace's
Functions share are written as carefully.

``FunctionReconciler`` (functions.py) calls ``OwnedObjects.ensure`` for each object it builds;
the store (the watch cache) is what "stored" means. An object it has not seen is created with a
POST, and read only when that finds one of its name; the fields a POST set are handed to the
controller's server-side apply before its first apply (managedfields.py).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from kubelambda.api.labels import COMPONENT_LABEL
from kubelambda.controller.cluster import Cluster
from kubelambda.controller.config import FIELD_MANAGER, REPLICAS_MANAGER
from kubelambda.controller.drift import contains, fingerprinted
from kubelambda.controller.managedfields import applied_entries, created_not_applied
from kubelambda.controller.replicas import needs_handover, replicas_claim
from kubelambda.controller.resources.deployment import with_replicas
from kubelambda.controller.resources.meta import Owner
from kubelambda.controller.resources.status import Blocked, BlockedError
from kubelambda.controller.store import Store
from kubelambda.platforms.kubernetes.errors import Conflict
from kubelambda.platforms.kubernetes.kinds import DEPLOYMENT, Kind, kind_of

__all__ = ["BeforeWrite", "OwnedObjects"]

logger = logging.getLogger(__name__)

# Called just before ``ensure`` writes an object (created or changed), with the change list.
BeforeWrite = Callable[[Owner, list[str]], Awaitable[None]]


class OwnedObjects:
    """Creates or updates a Function's objects through ``cluster``, against ``store``."""

    def __init__(self, *, cluster: Cluster, store: Store) -> None:
        self.cluster = cluster
        self.store = store

    async def live(self, kind: Kind, namespace: str, name: str) -> dict[str, Any] | None:
        """The stored object, from the watch cache or else the API server; None if absent."""
        live = self.store.get(kind, namespace=namespace, name=name)
        if live is None:
            # Not in the watch cache: maybe not created yet, maybe someone else's object.
            found = await self.cluster.get(kind, namespace=namespace, name=name)
            if found is not None:
                # None when a DELETED event came while the answer was on its way: absent.
                live = self.store.put(kind, found)
        return live

    async def ensure(
        self,
        desired: dict[str, Any],
        owner: Owner,
        changes: list[str],
        *,
        create_replicas: int | None = None,
        before_write: BeforeWrite | None = None,
    ) -> dict[str, Any] | None:
        """Create or update ``desired`` (``before_write`` first, when it writes), noting what
        it did in ``changes``; returns it as stored, or None when it was deleted after this
        write (the store has seen its DELETED event). ``create_replicas``: a Deployment's
        replicas when it is created (never applied again: the autoscaler owns them)."""
        kind = kind_of(desired)
        name = desired["metadata"]["name"]
        desired = fingerprinted(desired)
        live = self.store.get(kind, namespace=owner.namespace, name=name)
        if live is None:
            # Not in the watch cache: almost always not created yet. One POST creates it, or
            # fails because it exists (someone else's, or this Function's not yet seen), and
            # only then is it read: no GET before each new object.
            if before_write is not None:
                await before_write(owner, changes)
            created = await self.cluster.create(
                desired if create_replicas is None else with_replicas(desired, create_replicas),
                field_manager=FIELD_MANAGER,
            )
            if created is not None:
                changes.append(f"created {kind.kind} {name}")
                return self._keep(kind, created, owner)
            live = await self.live(kind, owner.namespace, name)
            if live is None:
                raise Conflict(409, "Conflict", f"{kind.kind} {name} went as it was created")
        if controller_uid(live) != owner.uid:
            raise BlockedError(
                Blocked(
                    "ResourceConflict",
                    f"{kind.kind} {name} already exists and is not owned by this Function;"
                    " rename the Function or remove that object",
                ),
                recheck=True,
            )
        if not contains(live, desired):
            if before_write is not None:
                await before_write(owner, changes)
            if created_not_applied(live):
                live = await self._take_over_creation(kind, live)
            if kind == DEPLOYMENT and needs_handover(live):
                # This apply leaves replicas out: were the controller still their only owner,
                # the server would reset them. Handing over only now saves a write per new
                # Function; the autoscaler's first scale takes them over anyway.
                live = await self._hand_over_replicas(live)
            live = await self.cluster.apply(desired, field_manager=FIELD_MANAGER)
            changes.append(f"updated {kind.kind} {name}")
        return self._keep(kind, live, owner)

    def _keep(self, kind: Kind, live: dict[str, Any], owner: Owner) -> dict[str, Any] | None:
        kept = self.store.put(kind, live)
        if kept is None:
            # Deleted while this write's answer was on its way. The DELETED event queued this
            # Function again, so the reconcile after this one creates it anew; until then it
            # does not exist, and the status says so (a Deployment "does not exist yet").
            name = live["metadata"]["name"]
            logger.info("%s %s/%s was deleted after this write", kind.kind, owner.namespace, name)
        return kept

    async def ensure_shared(
        self, desired: dict[str, Any], *, component: str, changes: list[str]
    ) -> None:
        """Create or update ``desired``, an object of the namespace that no one Function owns
        (its ``app.kubernetes.io/component`` label is ``component``), never over someone
        else's object of that name: every Function that needs it is blocked instead."""
        kind = kind_of(desired)
        meta = desired["metadata"]
        desired = fingerprinted(desired)
        live = await self.live(kind, meta["namespace"], meta["name"])
        if live is not None:
            labels = (live.get("metadata") or {}).get("labels") or {}
            if labels.get(COMPONENT_LABEL) != component:
                raise BlockedError(
                    Blocked(
                        "ResourceConflict",
                        f"{kind.kind} {meta['name']} already exists and is not kubelambda's;"
                        " remove that object",
                    ),
                    recheck=True,
                )
            if contains(live, desired):
                return
        applied = await self.cluster.apply(desired, field_manager=FIELD_MANAGER)
        changes.append(f"{'created' if live is None else 'updated'} {kind.kind} {meta['name']}")
        self.store.put(kind, applied)

    async def retire(self, kind: Kind, owner: Owner, name: str, changes: list[str]) -> None:
        """Delete the Function's object ``name`` if the watch shows one (an object it no longer
        needs, made by an earlier version or for an earlier spec); no request otherwise."""
        live = self.store.get(kind, namespace=owner.namespace, name=name)
        if live is None or controller_uid(live) != owner.uid:
            return
        uid = str((live.get("metadata") or {}).get("uid"))
        try:
            deleted = await self.cluster.delete(kind, namespace=owner.namespace, name=name, uid=uid)
        except Conflict:
            return  # a newer object of that name: the next reconcile looks at it
        self.store.remove(kind, live)
        if deleted:
            changes.append(f"deleted {kind.kind} {name}")

    async def _take_over_creation(self, kind: Kind, live: dict[str, Any]) -> dict[str, Any]:
        # The store keeps no fields, so the whole list is read; the write is conditional on
        # that version: a change meanwhile conflicts, and the retry reads again.
        meta = live["metadata"]
        full = await self.cluster.get(kind, namespace=meta["namespace"], name=meta["name"])
        if full is None:
            raise Conflict(409, "Conflict", f"{kind.kind} {meta['name']} went as it was updated")
        full_meta = full["metadata"]
        return await self.cluster.set_managed_fields(
            kind,
            namespace=full_meta["namespace"],
            name=full_meta["name"],
            resource_version=full_meta["resourceVersion"],
            entries=applied_entries(full_meta.get("managedFields") or []),
        )

    async def _hand_over_replicas(self, live: dict[str, Any]) -> dict[str, Any]:
        # Without force: should the autoscaler have taken replicas meanwhile, this conflicts
        # instead of setting them back, and the retry sees the new owner.
        return await self.cluster.apply(
            replicas_claim(live), field_manager=REPLICAS_MANAGER, force=False
        )


def controller_uid(obj: Mapping[str, Any]) -> str | None:
    """The uid of the object's controller (its owner reference marked controller), if any."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or ():
        if ref.get("controller"):
            return str(ref.get("uid"))
    return None
