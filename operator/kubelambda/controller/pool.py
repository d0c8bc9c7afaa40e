"""The warm pool's standing side: keeps each watched namespace's pools (a Deployment per runtime,
the token Secret, the NetworkPolicy), knows which pods were specialised for which Function, and
deletes them once they are no longer needed: when the Function's Deployment has a ready pod
(the hand-over), when its code changed, or when it scaled to zero.

The Function reconciler calls ``ensure``, ``cold_start`` and ``settle``; ``run`` keeps the pools
of the namespaces named on the command line even before they hold a Function. The claiming
side (a wake-up at zero) is controller/warmstart.py. ``PoolPods`` names the pod calls;
platforms/kubernetes/pods.py makes them.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, Protocol

from kubelambda.api import Function
from kubelambda.api.identity import FunctionKey
from kubelambda.api.labels import CODE_HASH_ANNOTATION, FUNCTION_LABEL
from kubelambda.controller.cluster import Cluster
from kubelambda.controller.config import FIELD_MANAGER, ControllerConfig
from kubelambda.controller.drift import contains, fingerprinted
from kubelambda.controller.resources.pool import (
    FROM_POOL_LABEL,
    POOL_LABEL,
    SPECIALIZED_AT_ANNOTATION,
    TOKEN_KEY,
    ColdStart,
    cold_start,
    pool_deployment,
    pool_network_policy,
    pool_secret,
)
from kubelambda.controller.resources.status import DeploymentState
from kubelambda.controller.store import Store
from kubelambda.platforms.kubernetes.errors import ApiError
from kubelambda.platforms.kubernetes.kinds import DEPLOYMENT, Kind, kind_of
from kubelambda.platforms.kubernetes.secrets import secret_text

__all__ = ["PoolManager", "PoolPods", "SpecializedPod", "parse_time"]

logger = logging.getLogger(__name__)
JSON = dict[str, Any]

# A wake-up at zero scales the Deployment to 1 while the pod is specialised; a reconcile that
# read the Deployment before that scale must not take the fresh pod for one left at zero.
SCALED_TO_ZERO_AFTER: Final = timedelta(seconds=30)


class PoolPods(Protocol):
    async def list_pods(self, namespace: str, *, selector: str) -> list[JSON]: ...

    async def patch_pod(self, namespace: str, name: str, patch: Mapping[str, Any]) -> JSON: ...

    async def delete_pod(self, namespace: str, name: str, *, grace_seconds: int | None) -> bool: ...

    async def create_once(self, obj: Mapping[str, Any]) -> JSON: ...


@dataclass(frozen=True)
class SpecializedPod:
    """A pool pod that now serves a Function: its name, the code it loaded and when."""

    name: str
    code_hash: str | None
    at: datetime


def parse_time(text: object) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


class PoolManager:
    def __init__(
        self,
        *,
        cluster: Cluster,
        pods: PoolPods,
        store: Store,
        config: ControllerConfig,
        clock: Callable[[], datetime],
        namespaces: tuple[str, ...] = (),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cluster = cluster
        self.pods = pods
        self.store = store
        self.config = config
        self.pool = config.warm_pool
        self.clock = clock
        # Named on the command line (the pool's own, else the operator's): pools before any
        # Function.
        self.namespaces = self.pool.namespaces or namespaces
        self._monotonic = monotonic
        self._ensured: dict[str, float] = {}  # namespace → when its pools were last ensured
        self._locks: dict[str, asyncio.Lock] = {}
        self._tokens: dict[str, str] = {}
        # Specialised pods by Function: from this process's claims, and from a listing of each
        # namespace the first time its pools are ensured (after a restart).
        self.specialized: dict[FunctionKey, dict[str, SpecializedPod]] = {}

    # --- the pools ---------------------------------------------------------------------------

    def cold_start(self, function: Function) -> ColdStart:
        return cold_start(function, pool=self.pool)

    def token(self, namespace: str) -> str | None:
        """The pool's bearer token in ``namespace``, once its pools were ensured."""
        return self._tokens.get(namespace)

    def refresh(self, namespace: str) -> None:
        """Read the namespace's token and pools again at the next ``ensure``."""
        self._ensured.pop(namespace, None)
        self._tokens.pop(namespace, None)

    async def run(self) -> None:
        """Ensure the named namespaces' pools now and at every resync, until cancelled."""
        while True:
            for namespace in self.namespaces:
                try:
                    await self.ensure(namespace)
                except ApiError as exc:
                    logger.warning("warm pool of namespace %s: %s", namespace, exc)
                except Exception:  # the reconciles ensure it again; never stop the operator
                    logger.exception("warm pool of namespace %s", namespace)
            await asyncio.sleep(self.config.resync_seconds)  # a period, not a wait for a state

    async def ensure(self, namespace: str) -> None:
        """The namespace's token Secret, NetworkPolicy and a Deployment per runtime of the pool,
        as configured; a no-op when done within the last resync period, or when the namespace
        has no pool."""
        if not self.pool.serves(namespace):
            return
        done = self._ensured.get(namespace)
        if done is not None and self._monotonic() - done < self.config.resync_seconds:
            return
        async with self._locks.setdefault(namespace, asyncio.Lock()):
            done = self._ensured.get(namespace)
            if done is not None and self._monotonic() - done < self.config.resync_seconds:
                return
            first = done is None
            secret = await self.pods.create_once(
                pool_secret(namespace=namespace, token=secrets.token_urlsafe(32))
            )
            token = secret_text(secret).get(TOKEN_KEY)
            if token:
                self._tokens[namespace] = token
            wanted = [pool_network_policy(namespace=namespace, config=self.config)]
            for runtime in self.pool.runtimes:
                image = self.config.runtime_images.get(runtime)
                if image is None:
                    logger.warning("warm pool: runtime %s has no image; no pool for it", runtime)
                    continue
                wanted.append(
                    pool_deployment(
                        namespace=namespace,
                        runtime=runtime,
                        image=image,
                        pool=self.pool,
                        config=self.config,
                    )
                )
            await asyncio.gather(*(self._apply(obj) for obj in wanted))
            if first:
                await self._recall(namespace)
            self._ensured[namespace] = self._monotonic()

    async def _apply(self, desired: Mapping[str, Any]) -> None:
        kind: Kind = kind_of(desired)
        meta = desired["metadata"]
        desired = fingerprinted(desired)
        live = self.store.get(kind, namespace=meta["namespace"], name=meta["name"])
        if live is None:
            live = await self.cluster.get(kind, namespace=meta["namespace"], name=meta["name"])
        labels = ((live or {}).get("metadata") or {}).get("labels") or {}
        if live is not None and kind == DEPLOYMENT and POOL_LABEL not in labels:
            logger.warning(
                "warm pool: Deployment %s/%s exists and is not a pool; leaving it",
                meta["namespace"],
                meta["name"],
            )
            return
        if live is not None and contains(live, desired):
            return
        applied = await self.cluster.apply(desired, field_manager=FIELD_MANAGER)
        self.store.put(kind, applied)

    async def _recall(self, namespace: str) -> None:
        """Learn the pods specialised before this process started."""
        found = await self.pods.list_pods(namespace, selector=f"{FROM_POOL_LABEL},!{POOL_LABEL}")
        for pod in found:
            meta = pod.get("metadata") or {}
            labels = meta.get("labels") or {}
            annotations = meta.get("annotations") or {}
            function = labels.get(FUNCTION_LABEL)
            at = parse_time(annotations.get(SPECIALIZED_AT_ANNOTATION))
            if function and at is not None and not meta.get("deletionTimestamp"):
                self.remember(
                    FunctionKey(namespace, str(function)),
                    SpecializedPod(
                        name=str(meta["name"]),
                        code_hash=annotations.get(CODE_HASH_ANNOTATION),
                        at=at,
                    ),
                )

    # --- specialised pods ----------------------------------------------------------------------

    def remember(self, function: FunctionKey, pod: SpecializedPod) -> None:
        self.specialized.setdefault(function, {})[pod.name] = pod

    def serving(self, function: FunctionKey) -> bool:
        """Whether a specialised pod serves ``function`` now."""
        return bool(self.specialized.get(function))

    def forget(self, function: FunctionKey) -> None:
        """The Function is gone; the garbage collector deletes its pods (ownerReference)."""
        self.specialized.pop(function, None)

    async def settle(
        self,
        function: FunctionKey,
        *,
        deployment: DeploymentState | None,
        code_hash: str | None,
        grace_seconds: int,
    ) -> float | None:
        """Delete the Function's specialised pods that are no longer needed. Each goes
        gracefully (``grace_seconds``): it leaves the Service's endpoints first, and its runtime
        finishes what it serves. Answers in how many seconds to look again (a pod kept only
        because its claim is too recent to trust a count of zero), or None."""
        pods = self.specialized.get(function)
        if not pods or deployment is None:
            return None
        now = self.clock()
        recheck = None
        for pod in list(pods.values()):
            why = None
            if deployment.ready > 0:
                why = "the Deployment has a ready pod"
            elif code_hash is not None and pod.code_hash != code_hash:
                why = "the code changed"
            elif deployment.desired == 0:
                left = (pod.at + SCALED_TO_ZERO_AFTER - now).total_seconds()
                if left <= 0:
                    why = "the Function scaled to zero"
                else:
                    recheck = min(recheck or left, left)
            if why is None:
                continue
            await self.pods.delete_pod(function.namespace, pod.name, grace_seconds=grace_seconds)
            pods.pop(pod.name, None)
            logger.info("%s: deleted specialised pod %s: %s", function, pod.name, why)
        if not pods:
            self.specialized.pop(function, None)
        return recheck
