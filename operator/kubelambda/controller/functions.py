"""Reconciles one Function: builds its Service and Deployment (with the package and layers it
pinned on S3), its code ConfigMap unless its code rides in the pods' environment, its
namespace's shared NetworkPolicy and its own when it declares destinations; applies what differs
from the watched copies (owned.py), deletes what it no longer needs, and writes a status that
tells the truth.

The operator's workers call ``FunctionReconciler.reconcile`` with a key from the queue. It is
level-based: it reads only the current objects, so running it twice, or after a restart,
changes nothing, and an owned object edited by hand is put back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kubelambda.api import ConfigMapCode, Function, InlineCode, SpecError, parse_function
from kubelambda.api.environment import stop_grace_seconds
from kubelambda.api.function import S3Object
from kubelambda.api.identity import FunctionKey
from kubelambda.api.packages import PackageStore, function_zips
from kubelambda.controller.cluster import Cluster
from kubelambda.controller.config import ControllerConfig
from kubelambda.controller.owned import OwnedObjects
from kubelambda.controller.packages import PackagesBlocked, package_fetch
from kubelambda.controller.pool import PoolManager
from kubelambda.controller.resources.code import (
    CodeMount,
    CodeTooLarge,
    code_config_map,
    code_hash,
    config_map_hash,
    inline_code_mount,
)
from kubelambda.controller.resources.deployment import (
    announce_secret,
    code_in_environment,
    function_deployment,
)
from kubelambda.controller.resources.meta import Owner, code_config_map_name
from kubelambda.controller.resources.networkpolicy import (
    FUNCTIONS_POLICY_COMPONENT,
    function_network_policy,
    functions_network_policy,
)
from kubelambda.controller.resources.packages import PackageFetch
from kubelambda.controller.resources.service import function_service
from kubelambda.controller.resources.status import (
    FUNCTION_STATUS_KEYS,
    Blocked,
    BlockedError,
    DeploymentState,
    function_status,
)
from kubelambda.controller.statuswrite import status_patch
from kubelambda.controller.store import Store
from kubelambda.platforms.kubernetes.errors import ApiError
from kubelambda.platforms.kubernetes.kinds import CONFIG_MAP, DEPLOYMENT, FUNCTION, NETWORK_POLICY
from kubelambda.platforms.packages import S3Packages

__all__ = ["FunctionReconciler", "Result"]

logger = logging.getLogger(__name__)
# A Function waiting for something the operator does not watch (a user's ConfigMap) looks again.
RECHECK_SECONDS = 30.0


@dataclass(frozen=True)
class Result:
    """What the worker does next with the key: nothing, or look again after ``requeue_after``."""

    requeue_after: float | None = None


@dataclass(frozen=True)
class _Code:
    config_map: dict[str, Any] | None
    mount: CodeMount | None
    hash: str | None
    packages: PackageFetch | None = None


def _rolled_out(deployment: Mapping[str, Any]) -> bool:
    """Every pod of ``deployment`` runs its latest template (none of an older one is left)."""
    state = DeploymentState.of(deployment)
    return state.current and state.updated == state.total


class FunctionReconciler:
    def __init__(
        self,
        *,
        cluster: Cluster,
        store: Store,
        config: ControllerConfig,
        clock: Callable[[], datetime],
        packages: PackageStore | None = None,
        fetch_image: str | None = None,
        pool: PoolManager | None = None,
    ) -> None:
        self.cluster = cluster
        self.store = store
        self.owned = OwnedObjects(cluster=cluster, store=store)
        self.config = config
        self.clock = clock
        # Reads spec.code.s3 and spec.layers; fetch_image (the control-plane image) runs the
        # init container that fetches them into the pods.
        self.packages: PackageStore = packages if packages is not None else S3Packages()
        self.fetch_image = fetch_image
        # The warm pool, when the operator runs one: its pools, and the hand-over of its pods.
        self.pool = pool

    async def reconcile(self, namespace: str, name: str) -> Result:
        body = self.store.get(FUNCTION, namespace=namespace, name=name)
        meta = (body or {}).get("metadata") or {}
        if body is None or meta.get("deletionTimestamp"):
            if self.pool is not None:
                self.pool.forget(FunctionKey(namespace, name))
            return Result()  # the garbage collector removes what it owned
        owner = Owner(name=name, namespace=namespace, uid=str(meta.get("uid")))
        blocked: Blocked | None = None
        recheck = False
        deployment: dict[str, Any] | None = None
        code: _Code | None = None
        function: Function | None = None
        pool_recheck: float | None = None
        changes: list[str] = []
        try:
            function = self._parse(body)
            code = await self._code(function, owner, generation=meta.get("generation"))
            deployment = await self._apply_all(function, owner, code, changes)
            if self.pool is not None and deployment is not None:
                pool_recheck = await self._settle_pool(self.pool, function, deployment, code.hash)
        except BlockedError as exc:
            blocked, recheck = exc.blocked, exc.recheck
        except ApiError as exc:
            if exc.transient:
                raise  # the worker retries with backoff; status cannot be written now anyway
            blocked = Blocked("ApplyFailed", exc.message)
            recheck = True
        cold_start = None
        if self.pool is not None and function is not None:
            found = self.pool.cold_start(function)
            cold_start = (found.path, found.reason)
        await self._write_status(
            body,
            blocked=blocked,
            deployment=deployment,
            code_hash=code.hash if code else None,
            cold_start=cold_start,
        )
        if changes:
            await self.cluster.record_event(
                body, type="Normal", reason="Applied", message="applied " + ", ".join(changes)
            )
        if recheck:
            pool_recheck = min(pool_recheck or RECHECK_SECONDS, RECHECK_SECONDS)
        return Result(requeue_after=pool_recheck)

    @staticmethod
    async def _settle_pool(
        pool: PoolManager, function: Function, deployment: dict[str, Any], code_hash: str | None
    ) -> float | None:
        """The namespace's pools, and the Function's specialised pods settled: a failure here
        never blocks the Function, whose Deployment serves it without a pool. Answers when to
        look again (``PoolManager.settle``)."""
        try:
            await pool.ensure(function.namespace)
            return await pool.settle(
                FunctionKey(function.namespace, function.name),
                deployment=DeploymentState.of(deployment),
                code_hash=code_hash,
                grace_seconds=stop_grace_seconds(function),
            )
        except ApiError as exc:
            if exc.transient:
                raise
            logger.warning("warm pool of %s/%s: %s", function.namespace, function.name, exc)
            return None

    # --- gathering -------------------------------------------------------------------------

    @staticmethod
    def _parse(body: Mapping[str, Any]) -> Function:
        try:
            return parse_function(body)
        except SpecError as exc:
            raise BlockedError(Blocked("InvalidSpec", str(exc))) from None

    def _image(self, function: Function) -> str:
        if function.image is not None:
            return function.image
        runtime = function.runtime or ""
        image = self.config.runtime_images.get(runtime)
        if image is None:
            known = ", ".join(sorted(self.config.runtime_images)) or "none"
            raise BlockedError(
                Blocked(
                    "RuntimeUnavailable",
                    f"spec.runtime {runtime} has no image in the operator's configuration"
                    f" (configured: {known}; Helm value runtime.images)",
                )
            )
        return image

    async def _code(self, function: Function, owner: Owner, *, generation: int | None) -> _Code:
        code = await self._own_code(function, owner)
        if not function_zips(function):
            return code
        try:
            packages = await package_fetch(
                function,
                owner=owner,
                generation=generation,
                live=self.store.get(DEPLOYMENT, namespace=owner.namespace, name=owner.name),
                cluster=self.cluster,
                store=self.packages,
                fetch_image=self.fetch_image,
                region=self.config.region,
            )
        except PackagesBlocked as exc:
            raise BlockedError(exc.blocked, recheck=exc.recheck) from None
        if isinstance(function.code, S3Object):
            [package] = [z for z in packages.plan.zips if z.target == "task"]
            # The package's own SHA-256 (Lambda's CodeSha256, in hex): what the pods run.
            return _Code(
                config_map=None, mount=None, hash=f"sha256:{package.sha256}", packages=packages
            )
        return _Code(code.config_map, code.mount, code.hash, packages=packages)

    async def _own_code(self, function: Function, owner: Owner) -> _Code:
        source = function.code
        if isinstance(source, InlineCode):
            try:
                config_map = code_config_map(source.files, owner=owner)
            except CodeTooLarge as exc:
                raise BlockedError(Blocked("CodeTooLarge", str(exc))) from None
            return _Code(
                config_map=config_map,
                mount=inline_code_mount(source.files, function_name=function.name),
                hash=code_hash(source.files),
            )
        if isinstance(source, ConfigMapCode):
            found = await self.cluster.get(CONFIG_MAP, namespace=owner.namespace, name=source.name)
            if found is None:
                raise BlockedError(
                    Blocked(
                        "CodeNotFound",
                        f"spec.code.configMapRef: ConfigMap {source.name} does not exist in"
                        f" namespace {owner.namespace}",
                    ),
                    recheck=True,
                )
            return _Code(
                config_map=None,
                mount=CodeMount(config_map=source.name),
                hash=config_map_hash(found),
            )
        return _Code(config_map=None, mount=None, hash=None)  # in the image, or in a package

    # --- applying --------------------------------------------------------------------------

    async def _apply_all(
        self, function: Function, owner: Owner, code: _Code, changes: list[str]
    ) -> dict[str, Any] | None:
        """The Deployment as applied, or None when it was deleted meanwhile."""
        image = self._image(function)
        in_environment = code.mount is not None and code_in_environment(
            function, code=code.mount, packages=code.packages, config=self.config
        )
        # Code and the network policies go first: a pod never starts without its code, nor
        # unprotected.
        shared = functions_network_policy(namespace=owner.namespace, config=self.config)
        first = [
            self.owned.ensure_shared(shared, component=FUNCTIONS_POLICY_COMPONENT, changes=changes),
            self.owned.ensure(function_service(owner=owner), owner, changes),
        ]
        own_policy = function_network_policy(function, owner=owner, config=self.config)
        if own_policy is not None:
            first.append(self.owned.ensure(own_policy, owner, changes))
        if code.config_map is not None and not in_environment:
            first.append(self.owned.ensure(code.config_map, owner, changes))
        await asyncio.gather(*first)
        if own_policy is None:
            # The shared policy is in place: the Function's own (an earlier version's, or
            # for destinations it no longer declares) would only add stale rules.
            await self.owned.retire(NETWORK_POLICY, owner, owner.name, changes)
        desired = function_deployment(
            function,
            owner=owner,
            image=image,
            code=code.mount,
            code_hash=code.hash,
            config=self.config,
            packages=code.packages,
        )
        deployment = await self.owned.ensure(
            desired,
            owner,
            changes,
            create_replicas=function.scaling.min_replicas,
            before_write=self._announce_key if self.config.announce_url else None,
        )
        if in_environment and deployment is not None and _rolled_out(deployment):
            # No pod reads the code ConfigMap an earlier version made any more (a pod of the
            # old ReplicaSet would, were it started again: hence only once the rollout is done).
            await self.owned.retire(CONFIG_MAP, owner, code_config_map_name(owner.name), changes)
        return deployment

    async def _announce_key(self, owner: Owner, changes: list[str]) -> None:
        """Before the Deployment is written: the key its pods announce themselves with. Made
        on a write only (a new Function, or new pods on the way), so the reconciles that
        change nothing cost no request; a pod whose Secret is gone starts without it."""
        secret = announce_secret(owner)
        if await self.cluster.create_once(secret):
            changes.append(f"created Secret {secret['metadata']['name']}")

    # --- reporting -------------------------------------------------------------------------

    async def _write_status(
        self,
        body: dict[str, Any],
        *,
        blocked: Blocked | None,
        deployment: dict[str, Any] | None,
        code_hash: str | None,
        cold_start: tuple[str, str | None] | None,
    ) -> None:
        meta = body["metadata"]
        old = body.get("status") or {}
        status = function_status(
            old=old,
            generation=meta.get("generation"),
            blocked=blocked,
            deployment=DeploymentState.of(deployment) if deployment is not None else None,
            min_replicas=_min_replicas(body.get("spec")),
            url=self.config.function_url(namespace=meta["namespace"], name=meta["name"]),
            code_hash=code_hash,
            now=self.clock(),
            cold_start=cold_start,
        )
        patch = status_patch(old, status, owned=FUNCTION_STATUS_KEYS)
        if not patch:
            return
        updated = await self.cluster.patch_status(
            FUNCTION, namespace=meta["namespace"], name=meta["name"], status=patch
        )
        self.store.put(FUNCTION, updated)
        if blocked is not None and _reason(old) != blocked.reason:
            await self.cluster.record_event(
                body, type="Warning", reason=blocked.reason, message=blocked.message
            )


def _reason(status: Mapping[str, Any]) -> str | None:
    for condition in status.get("conditions") or ():
        if condition.get("type") == "Ready":
            return str(condition.get("reason"))
    return None


def _min_replicas(spec: object) -> int:
    """spec.scaling.minReplicas of a spec that may be invalid (its status still says so): 0
    unless it is an integer, as the models would have refused anything else."""
    scaling = spec.get("scaling") if isinstance(spec, Mapping) else None
    minimum = scaling.get("minReplicas") if isinstance(scaling, Mapping) else None
    return minimum if isinstance(minimum, int) and not isinstance(minimum, bool) else 0
