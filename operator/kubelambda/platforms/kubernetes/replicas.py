"""The autoscaler's view of a cluster: replica counts of Function Deployments, learnt from the
process's watch (``deployment_event``) and written through the scale subresource.

The autoscaler is the only writer of these counts; it scales through ``/scale`` with its
own field manager, so the controller (which set the first count) never fights it, and
records what it decided and why in the Function's ``status.autoscaler`` for kubectl.
``kubelambda operator`` feeds it the Deployment events its one watch layer (kopf) sees.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from kubelambda.api.identity import FunctionKey
from kubelambda.api.labels import FUNCTION_LABEL
from kubelambda.platforms.kubernetes.client import JSON, KubeClient
from kubelambda.platforms.kubernetes.kinds import DEPLOYMENT, FUNCTION

__all__ = ["AUTOSCALER_MANAGER", "DeploymentReplicas"]

logger = logging.getLogger(__name__)

AUTOSCALER_MANAGER = "kubelambda-autoscaler"
# How long a written count waits for the watch to show it before the watch wins again
# (someone else, `kubectl scale`, may have written after us).
EXPECTATION_SECONDS = 10.0


class DeploymentReplicas:
    """The autoscaler's ReplicaTarget on a cluster: one Deployment per Function, same name."""

    def __init__(self, client: KubeClient, *, run: Callable[..., Any]) -> None:
        self.client = client
        self._run = run  # runs a blocking client call off the event loop
        self._replicas: dict[FunctionKey, int] = {}
        self._reported: dict[FunctionKey, tuple[int, str]] = {}
        # Counts asked for and not yet seen in the watch: until the watch shows them, an
        # event still carrying the old count is stale and must not undo the decision.
        self._expected: dict[FunctionKey, tuple[int, float]] = {}

    def deployment_event(self, event_type: str | None, deployment: Mapping[str, Any]) -> None:
        """A watch event of a Deployment (kopf gives None for the first listing)."""
        meta = deployment.get("metadata") or {}
        function = (meta.get("labels") or {}).get(FUNCTION_LABEL)
        if not function:
            return
        key = FunctionKey(str(meta.get("namespace") or ""), str(function))
        if event_type == "DELETED":
            self._replicas.pop(key, None)
            self._expected.pop(key, None)
            return
        replicas = int((deployment.get("spec") or {}).get("replicas") or 0)
        expected = self._expected.get(key)
        if expected is not None:
            count, until = expected
            if replicas == count or time.monotonic() > until:
                self._expected.pop(key, None)
            else:
                return  # older than our own write
        self._replicas[key] = replicas

    async def refresh(self, function: FunctionKey) -> None:
        """Read the count from the API server now, not from the watch.

        A wake-up must not trust the cache: right after someone else scaled to zero, the
        watch may not have told us yet, and the wake-up would see a pod that is gone.
        """
        namespace, name = function
        scale = await self._run(
            self.client.get, DEPLOYMENT, namespace=namespace, name=name, subresource="scale"
        )
        if scale is None:
            return
        self._replicas[function] = int((scale.get("spec") or {}).get("replicas") or 0)
        self._expected.pop(function, None)

    def known(self, function: FunctionKey) -> bool:
        """Whether the Function's Deployment exists (the controller made it)."""
        return function in self._replicas

    def replicas(self, function: FunctionKey) -> int:
        return self._replicas.get(function, 0)

    async def scale(self, function: FunctionKey, replicas: int, *, reason: str) -> None:
        namespace, name = function
        if function not in self._replicas:
            return  # no Deployment yet: the controller has not created it
        await self._run(
            self.client.merge_patch,
            DEPLOYMENT,
            namespace=namespace,
            name=name,
            patch={"spec": {"replicas": replicas}},
            subresource="scale",
            field_manager=AUTOSCALER_MANAGER,
        )
        # The watch confirms it soon; until then, decide from what was asked.
        self._replicas[function] = replicas
        self._expected[function] = (replicas, time.monotonic() + EXPECTATION_SECONDS)
        logger.info("%s/%s scaled to %d: %s", namespace, name, replicas, reason)

    async def report(self, function: FunctionKey, *, desired: int, reason: str) -> None:
        """Write the decision to status.autoscaler when it changed (kubectl shows it)."""
        if self._reported.get(function) == (desired, reason):
            return
        namespace, name = function
        status = {
            "autoscaler": {
                "desiredReplicas": desired,
                "reason": reason,
                "lastDecisionTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
        }
        await self._run(
            self.client.merge_patch,
            FUNCTION,
            namespace=namespace,
            name=name,
            patch={"status": status},
            subresource="status",
            field_manager=AUTOSCALER_MANAGER,
        )
        self._reported[function] = (desired, reason)

    async def fetch_function(self, function: FunctionKey) -> JSON | None:
        """The Function object from the API server (a wake-up for one the watch has not
        delivered yet), or None when there is none."""
        found: JSON | None = await self._run(
            self.client.get, FUNCTION, namespace=function.namespace, name=function.name
        )
        return found
