"""kopf's part: watches Functions, Triggers and the objects the controller owns, and hands every
event to the ``Operator``; also logs in with the operator's kubeconfig and tunes kopf.

main.py builds the registry with ``build_registry`` and runs it. Handlers only observe
(``kopf.on.event``): the reconcile happens in the Operator's queue, so kopf stores nothing on
the objects — no annotations, no status fields — and GitOps tools see no drift. They are
coroutines so that kopf runs them on the event loop, where the Operator lives (kopf would
run plain functions on a thread).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any

import kopf

from kubelambda.controller.operator import Operator
from kubelambda.controller.resources.meta import MANAGED_BY, MANAGED_BY_LABEL
from kubelambda.kube.client import Connection
from kubelambda.kube.kinds import CONFIG_MAP, DEPLOYMENT, NETWORK_POLICY, SERVICE, Kind

__all__ = ["build_registry"]

logger = logging.getLogger(__name__)
OWNED: tuple[Kind, ...] = (CONFIG_MAP, DEPLOYMENT, SERVICE, NETWORK_POLICY)


class _NoDiffBase(kopf.AnnotationsDiffBaseStorage):
    """kopf builds every event's "essence" (a deep copy of the body) for change-detecting
    handlers; this operator has none, and the copies were a fifth of its CPU at 1,000
    Functions. It stores nothing either: kopf writes a diff base only for such handlers."""

    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None
    ) -> kopf.BodyEssence:
        return kopf.BodyEssence()


def _selector(kind: Kind) -> tuple[str, str] | tuple[str, str, str]:
    """The resource as kopf's selectors name it: ("v1", plural) for the core group."""
    if not kind.group:
        return (kind.version, kind.plural)
    return (kind.group, kind.version, kind.plural)


def build_registry(
    operator: Operator, *, connection: Callable[[], Connection]
) -> kopf.OperatorRegistry:
    """kopf's handlers for ``operator``; ``connection`` is asked again whenever kopf logs in
    (at start and after a 401), so a rotated service-account token is picked up."""
    registry = kopf.OperatorRegistry()
    tasks: list[asyncio.Task[None]] = []

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        current = connection()
        return kopf.ConnectionInfo(
            server=current.server,
            ca_path=current.ca_path,
            insecure=current.insecure,
            scheme="Bearer" if current.token else None,
            token=current.token,
            certificate_path=current.cert_path,
            private_key_path=current.key_path,
        )

    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        # No CRD or namespace scanning: the resources are known, and RBAC stays narrow.
        settings.scanning.disabled = True
        # kopf's own Events would describe its handlers, not the Functions.
        settings.posting.enabled = False
        # Only the objects the controller made, selected by the API server, not in memory.
        selector = f"{MANAGED_BY_LABEL}={MANAGED_BY}"
        for kind in OWNED:
            settings.watching.label_selectors[_selector(kind)] = selector
        # Nothing is stored on the objects, but should kopf ever need to, annotations only
        # under our own prefix, never status.kopf (which the CRDs do not keep).
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
            prefix="kubelambda.dev"
        )
        settings.persistence.diffbase_storage = _NoDiffBase(prefix="kubelambda.dev")
        settings.persistence.finalizer = "kubelambda.dev/kopf"
        tasks.append(asyncio.create_task(operator.run(), name="kubelambda-workers"))

    @kopf.on.cleanup(registry=registry)
    async def cleanup(**_: Any) -> None:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    @kopf.on.event("kubelambda.dev", "v1alpha1", "functions", registry=registry)
    async def function_event(event: kopf.RawEvent, **_: Any) -> None:
        operator.function_event(event.get("type"), event["object"])

    @kopf.on.event("kubelambda.dev", "v1alpha1", "triggers", registry=registry)
    async def trigger_event(event: kopf.RawEvent, **_: Any) -> None:
        operator.trigger_event(event.get("type"), event["object"])

    for kind in OWNED:
        _watch_owned(registry, operator, kind)

    return registry


def _watch_owned(registry: kopf.OperatorRegistry, operator: Operator, kind: Kind) -> None:
    @kopf.on.event(
        *_selector(kind),
        id=f"owned-{kind.plural}",
        labels={MANAGED_BY_LABEL: MANAGED_BY},
        registry=registry,
    )
    async def owned_event(event: kopf.RawEvent, **_: Any) -> None:
        operator.owned_event(kind, event.get("type"), event["object"])
