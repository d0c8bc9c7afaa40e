"""The warm pool's part of ``kubelambda operator``: its flags, their configuration, and the
wiring of the warm start (the pod calls, the specialiser, a watch of the pool's pods).

commands/operator.py calls ``add_pool_flags``, ``warm_pool_config`` and ``WarmPoolWiring``.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
from collections.abc import Callable, Coroutine
from typing import Any

from kubelambda.controller.config import FIELD_MANAGER, ControllerConfig, WarmPool
from kubelambda.controller.operator import Operator
from kubelambda.controller.resources.pool import POOL_LABEL
from kubelambda.controller.specialize import HttpSpecializer
from kubelambda.controller.warmstart import PoolPodCache, WarmStarter
from kubelambda.platforms.kubernetes.client import KubeClient
from kubelambda.platforms.kubernetes.informer import Informer
from kubelambda.platforms.kubernetes.kinds import FUNCTION, POD
from kubelambda.platforms.kubernetes.pods import KubePoolPods

__all__ = ["WarmPoolWiring", "add_pool_flags", "warm_pool_config"]


def _names(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


def add_pool_flags(parser: argparse.ArgumentParser) -> None:
    pool = ControllerConfig().warm_pool
    parser.add_argument(
        "--warm-pool-size",
        type=int,
        default=pool.size,
        metavar="N",
        help="keep N generic runtime pods per watched namespace and pool runtime, which a"
        " Function at zero is specialised into on its first request while its Deployment"
        " scales up (0: no pool, nothing created; default: %(default)s)",
    )
    parser.add_argument(
        "--warm-pool-runtimes",
        type=_names,
        default=",".join(pool.runtimes),
        metavar="RUNTIME,RUNTIME",
        help="the runtimes that have a pool, each with a --runtime-image (default: %(default)s)",
    )
    parser.add_argument(
        "--warm-pool-memory",
        type=int,
        default=pool.memory_mb,
        metavar="MB",
        help="memory of a pool pod; only Functions with this memoryMB take the pool"
        " (default: %(default)s)",
    )
    parser.add_argument(
        "--warm-pool-namespace",
        action="append",
        default=[],
        metavar="NS",
        help="keep pools in this namespace only (repeatable; default: every namespace served,"
        " once it has a Function)",
    )


def warm_pool_config(args: argparse.Namespace) -> WarmPool:
    """The pool the flags ask for; SystemExit naming the flag that cannot make one."""
    if args.warm_pool_size < 0:
        raise SystemExit("--warm-pool-size must be 0 (no pool) or more")
    if not 128 <= args.warm_pool_memory <= 10240:
        raise SystemExit("--warm-pool-memory must be between 128 and 10240 MB, as memoryMB")
    if args.warm_pool_size and not args.warm_pool_runtimes:
        raise SystemExit("--warm-pool-runtimes must name at least one runtime")
    missing = set(args.warm_pool_runtimes) - set(dict(args.runtime_image))
    if args.warm_pool_size and missing:
        raise SystemExit(
            f"--warm-pool-runtimes {', '.join(sorted(missing))} need a --runtime-image each"
        )
    unserved = set(args.warm_pool_namespace) - set(args.namespace)
    if args.namespace and unserved:
        raise SystemExit(
            f"--warm-pool-namespace {', '.join(sorted(unserved))}: not a --namespace the"
            " operator serves"
        )
    return WarmPool(
        size=args.warm_pool_size,
        runtimes=args.warm_pool_runtimes,
        memory_mb=args.warm_pool_memory,
        namespaces=tuple(args.warm_pool_namespace),
    )


class WarmPoolWiring:
    """The pod calls the Operator's pool manager makes (``pods``, None without a pool) and,
    once the Operator exists, the warm starter the autoscaler's wake-ups call."""

    def __init__(self, client: KubeClient, config: ControllerConfig) -> None:
        self.client = client
        self.pods = (
            KubePoolPods(client, field_manager=FIELD_MANAGER) if config.warm_pool.enabled else None
        )
        self.cache = PoolPodCache()
        self.starter: WarmStarter | None = None

    def start(
        self, operator: Operator, namespaces: list[str]
    ) -> Callable[[], Coroutine[Any, Any, None]] | None:
        """Build the warm starter; returns the background work that watches the pool's pods."""
        if operator.pool is None:
            return None
        store = operator.store
        self.starter = WarmStarter(
            manager=operator.pool,
            specializer=HttpSpecializer(),
            function_object=lambda key: store.get(FUNCTION, namespace=key.namespace, name=key.name),
            cache=self.cache,
        )
        return functools.partial(self._watch, namespaces)

    async def _watch(self, namespaces: list[str]) -> None:
        """Keep the cache on the unclaimed pool pods of the watched namespaces (every one
        without any), so a warm start claims one without asking the API server."""
        loop = asyncio.get_running_loop()
        informers = [
            Informer(
                self.client,
                POD,
                on_event=self.cache.event,
                loop=loop,
                label_selector=POOL_LABEL,
                namespace=namespace,
            )
            for namespace in (list[str | None](namespaces) or [None])
        ]
        for informer in informers:
            informer.start()
        try:
            await asyncio.gather(*(informer.synced.wait() for informer in informers))
            self.cache.synced = True
            await asyncio.Event().wait()  # until cancelled
        finally:
            for informer in informers:
                informer.stop()

    async def aclose(self) -> None:
        if self.starter is not None:
            await self.starter.aclose()
        if self.pods is not None:
            self.pods.close()
