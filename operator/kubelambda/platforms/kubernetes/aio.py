"""The API calls the controller makes, awaitable: ``KubeClient`` calls run on a thread pool.

The operator's event loop must never block on the network, so each call runs on one of
``workers`` threads; that number also bounds how many requests are in flight at once.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar

from kubelambda.platforms.kubernetes.client import JSON, KubeClient
from kubelambda.platforms.kubernetes.errors import Conflict
from kubelambda.platforms.kubernetes.events import EventType, event_manifest
from kubelambda.platforms.kubernetes.kinds import Kind

__all__ = ["AsyncKube"]

T = TypeVar("T")
logger = logging.getLogger(__name__)


class AsyncKube:
    """Awaitable wrappers of the ``KubeClient`` calls the controller needs."""

    def __init__(
        self, client: KubeClient, *, workers: int = 8, component: str, field_manager: str
    ) -> None:
        self.client = client
        self.component = component
        self.field_manager = field_manager
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kube")

    async def _run(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(call, *args, **kwargs))

    async def get(self, kind: Kind, *, namespace: str, name: str) -> JSON | None:
        return await self._run(self.client.get, kind, namespace=namespace, name=name)

    async def apply(
        self, obj: Mapping[str, Any], *, field_manager: str, force: bool = True
    ) -> JSON:
        return await self._run(self.client.apply, obj, field_manager=field_manager, force=force)

    async def create(self, obj: Mapping[str, Any], *, field_manager: str) -> JSON | None:
        """Create ``obj``; None when an object of that name exists (it is left as it is)."""
        try:
            return await self._run(self.client.create, obj, field_manager=field_manager)
        except Conflict:
            return None

    async def set_managed_fields(
        self,
        kind: Kind,
        *,
        namespace: str,
        name: str,
        resource_version: str,
        entries: list[JSON],
    ) -> JSON:
        """Replace the object's managedFields, if it is still at ``resource_version`` (else
        Conflict); the API server records no manager for such a write."""
        return await self._run(
            self.client.merge_patch,
            kind,
            namespace=namespace,
            name=name,
            patch={"metadata": {"resourceVersion": resource_version, "managedFields": entries}},
        )

    async def create_once(self, obj: Mapping[str, Any]) -> bool:
        """Create ``obj`` unless it exists (then it is left as it is); True when created."""
        try:
            await self._run(self.client.create, obj)
        except Conflict:
            return False
        return True

    async def delete(self, kind: Kind, *, namespace: str, name: str, uid: str) -> bool:
        """Delete the object if it is still the one with ``uid``; False when it was gone
        (a newer object of that name, not ``uid``, raises Conflict)."""
        return await self._run(self.client.delete, kind, namespace=namespace, name=name, uid=uid)

    async def patch_status(
        self, kind: Kind, *, namespace: str, name: str, status: Mapping[str, Any]
    ) -> JSON:
        """Merge ``status`` into the object's status through the status subresource."""
        return await self._run(
            self.client.merge_patch,
            kind,
            namespace=namespace,
            name=name,
            patch={"status": dict(status)},
            subresource="status",
            field_manager=self.field_manager,
        )

    async def record_event(
        self, involved: Mapping[str, Any], *, type: EventType, reason: str, message: str
    ) -> None:
        """Post an Event; a failure is logged, never raised: events are a courtesy."""
        event = event_manifest(
            involved,
            type=type,
            reason=reason,
            message=message,
            component=self.component,
            now=datetime.now(UTC),
        )
        try:
            await self._run(self.client.create, event)
        except Exception as exc:  # an Event lost must not fail a reconcile
            logger.warning("could not post event %s on %s: %s", reason, involved, exc)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.client.close()
