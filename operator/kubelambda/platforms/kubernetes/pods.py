"""The warm pool's calls to the API server: list, patch and delete pods, and create a Secret once.

``kubelambda operator`` gives a ``KubePoolPods`` to the pool manager (controller/pool.py), which
names what it needs as the ``PoolPods`` protocol; the integration tests use this one against a
real API server. Calls run on a small thread pool of their own, so a burst of wake-ups never
waits behind the reconcilers' calls.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from kubelambda.platforms.kubernetes.client import JSON, KubeClient
from kubelambda.platforms.kubernetes.errors import Conflict
from kubelambda.platforms.kubernetes.kinds import POD, kind_of

__all__ = ["KubePoolPods"]

T = TypeVar("T")


class KubePoolPods:
    """Pods and the pool's Secret through ``client``, at most ``workers`` calls at once."""

    def __init__(self, client: KubeClient, *, workers: int = 4, field_manager: str) -> None:
        self.client = client
        self.field_manager = field_manager
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pool")

    async def _run(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(call, *args, **kwargs))

    async def list_pods(self, namespace: str, *, selector: str) -> list[JSON]:
        found = await self._run(
            self.client.list_objects, POD, namespace=namespace, label_selector=selector
        )
        return found.items

    async def patch_pod(self, namespace: str, name: str, patch: Mapping[str, Any]) -> JSON:
        """Merge-patch the pod; NotFound when it is gone."""
        return await self._run(
            self.client.merge_patch,
            POD,
            namespace=namespace,
            name=name,
            patch=patch,
            field_manager=self.field_manager,
        )

    async def delete_pod(self, namespace: str, name: str, *, grace_seconds: int | None) -> bool:
        """Delete the pod (its runtime drains within the grace period); False when gone."""
        return await self._run(
            self.client.delete, POD, namespace=namespace, name=name, grace_seconds=grace_seconds
        )

    async def create_once(self, obj: Mapping[str, Any]) -> JSON:
        """Create ``obj``, or return the one that exists already (it is never replaced)."""
        meta = obj["metadata"]
        try:
            return await self._run(self.client.create, obj)
        except Conflict:
            found = await self._run(
                self.client.get, kind_of(obj), namespace=meta["namespace"], name=meta["name"]
            )
            if found is None:  # deleted in between: the next look creates it
                raise
            return found

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
