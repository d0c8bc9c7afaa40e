"""The operator process's one watch layer, kopf: watches Functions, Triggers and the objects the
controller owns, and hands every event to whoever listens (the controller, the autoscaler);
also logs in with the operator's kubeconfig, tunes kopf, and runs it.

``kubelambda operator`` builds the registry with ``build_registry`` and runs it with
``run``. Handlers only observe (``kopf.on.event``): the reconcile happens in the
controller's queue, so kopf stores nothing on the objects — no annotations, no status
fields — and GitOps tools see no drift. They are coroutines so that kopf runs them on the
event loop, where the listeners live (kopf would run plain functions on a thread). For the
same reason kopf keeps no record of each object between its events (``ForgetfulMemories``).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from typing import Any

from kubelambda.api.labels import MANAGED_BY, MANAGED_BY_LABEL
from kubelambda.platforms.kubernetes.client import LIST_PAGE, Connection
from kubelambda.platforms.kubernetes.kinds import (
    CONFIG_MAP,
    DEPLOYMENT,
    NETWORK_POLICY,
    SERVICE,
    Kind,
)

# kopf imports the official client's models (43 MiB) only to recognise them in kopf.adopt and
# kopf.label, which kubelambda never calls; hidden, they become kopf's own dummies.
_HIDDEN = "kubernetes.client" not in sys.modules
if _HIDDEN:
    sys.modules["kubernetes.client"] = None  # type: ignore[assignment]
try:
    import kopf
    from kopf._cogs.structs.ephemera import AnyMemo
    from kopf._core.reactor.inventory import ResourceMemories, ResourceMemory
finally:
    if _HIDDEN:
        sys.modules.pop("kubernetes.client", None)

__all__ = ["OWNED", "ForgetfulMemories", "Listener", "build_registry", "run"]

Listener = Callable[[str | None, Mapping[str, Any]], None]
"""Called on the loop with a watch event's type (None for the first listing) and object."""

logger = logging.getLogger(__name__)
OWNED: tuple[Kind, ...] = (CONFIG_MAP, DEPLOYMENT, SERVICE, NETWORK_POLICY)
# How long kopf keeps an object's worker waiting for its next event (kopf's default: 5 s).
WORKER_IDLE_SECONDS = 0.2


class _NoDiffBase(kopf.AnnotationsDiffBaseStorage):
    """kopf builds every event's "essence" (a deep copy of the body) for change-detecting
    handlers; this operator has none, and the copies were a fifth of its CPU at 1,000
    Functions. It stores nothing either: kopf writes a diff base only for such handlers."""

    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None
    ) -> kopf.BodyEssence:
        return kopf.BodyEssence()


class ForgetfulMemories(ResourceMemories):
    """kopf's per-object records, kept only while one event is handled.

    kopf remembers every object it has seen until it is deleted (a memo, an error throttler,
    daemon and index state: about 0.8 KB each), 60 MiB for the 75,000 objects of 15,000
    Functions. They serve daemons, timers, indexes and change handlers, none of which this
    operator has; its handlers only observe, so each event starts from a fresh record.
    kopf has no public name for this container: ``kopf.operator`` takes it as ``memories``.
    """

    async def recall(
        self,
        raw_body: kopf.RawBody,
        *,
        memobase: AnyMemo | None = None,
        noticed_by_listing: bool = False,
        ephemeral: bool = False,
    ) -> ResourceMemory:
        return await super().recall(
            raw_body, memobase=memobase, noticed_by_listing=noticed_by_listing, ephemeral=True
        )

    def remembered(self) -> int:
        """How many objects have a record (0: for tests)."""
        return sum(1 for _ in self.iter_all_memories())


def _selector(kind: Kind) -> tuple[str, str] | tuple[str, str, str]:
    """The resource as kopf's selectors name it: ("v1", plural) for the core group."""
    if not kind.group:
        return (kind.version, kind.plural)
    return (kind.group, kind.version, kind.plural)


def build_registry(
    *,
    connection: Callable[[], Connection],
    listeners: Mapping[Kind, Sequence[Listener]],
    background: Sequence[Callable[[], Coroutine[Any, Any, None]]] = (),
) -> kopf.OperatorRegistry:
    """kopf's handlers: every event of a kind goes to its ``listeners`` (Functions, Triggers,
    and the owned kinds of ``OWNED``, selected by the managed-by label); ``background``
    coroutines run from kopf's startup to its cleanup. ``connection`` is asked again whenever
    kopf logs in (at start and after a 401), so a rotated service-account token is picked up."""
    registry = kopf.OperatorRegistry()
    tasks: list[asyncio.Task[None]] = []

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        current = connection()
        return kopf.ConnectionInfo(
            server=current.server,
            ca_path=current.ca_path,
            ca_data=current.ca_data,
            insecure=current.insecure,
            scheme="Bearer" if current.token else None,
            token=current.token,
            certificate_path=current.cert_path,
            certificate_data=current.cert_data,
            private_key_path=current.key_path,
            private_key_data=current.key_data,
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
        # A restart lists every Function and every object they own: in pages, not in one
        # answer, and kopf's worker for each object (a task, its queue, the object's last
        # event) ends soon after it has passed the event on, rather than 5 s later. At
        # 15,000 Functions a restart's peak RSS was 1,128 MiB; at 3,000, 282 MiB, and 120
        # with both (84 rather than 118 at the end of their creation).
        settings.watching.chunk_size = LIST_PAGE
        settings.batching.idle_timeout = WORKER_IDLE_SECONDS
        for work in background:
            tasks.append(asyncio.create_task(work()))

    @kopf.on.cleanup(registry=registry)
    async def cleanup(**_: Any) -> None:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    for kind, handlers in listeners.items():
        _watch(registry, kind, tuple(handlers))

    return registry


def _watch(registry: kopf.OperatorRegistry, kind: Kind, listeners: tuple[Listener, ...]) -> None:
    labels = {MANAGED_BY_LABEL: MANAGED_BY} if kind in OWNED else None

    @kopf.on.event(*_selector(kind), id=f"watch-{kind.plural}", labels=labels, registry=registry)
    async def event(event: kopf.RawEvent, **_: Any) -> None:
        for listener in listeners:
            listener(event.get("type"), event["object"])


async def run(
    registry: kopf.OperatorRegistry,
    *,
    namespaces: Sequence[str],
    liveness_endpoint: str | None,
    stop: asyncio.Event,
) -> None:
    """Run kopf with ``registry`` until ``stop`` is set: one replica (the chart's Recreate
    strategy), so no peering; all namespaces unless some are named."""
    await kopf.operator(
        registry=registry,
        standalone=True,
        clusterwide=not namespaces,
        namespaces=list(namespaces),
        liveness_endpoint=liveness_endpoint,
        stop_flag=stop,
        memories=ForgetfulMemories(),
    )
