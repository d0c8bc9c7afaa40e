"""A Function's first instance from the warm pool: on a wake-up at zero, claim a ready pool pod,
send it the Function's code and environment, and make it one of the Function's pods (its
labels, annotations and owner), while the autoscaler scales the Deployment behind it.

The autoscaler's wake endpoint calls ``WarmStarter.wake``, which answers at once: the work runs
in a task, a bounded number at a time, and the task's result (the pod, once relabelled) is what
the endpoint's answer names, so the gateway sends to it before the EndpointSlice lists it. A
pod whose specialisation failed (the handler's init failed, or it was not ready in time) is
deleted, an Event says why, and the Function's Deployment serves it as it would without a pool.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC
from typing import Any, Final

from kubelambda.api import ConfigMapCode, Function, InlineCode, SpecError, parse_function
from kubelambda.api.identity import FunctionKey
from kubelambda.autoscaler.arrivals import Instance
from kubelambda.controller.pool import PoolManager, SpecializedPod
from kubelambda.controller.resources.code import code_hash, config_map_hash
from kubelambda.controller.resources.deployment import PORT, runtime_env
from kubelambda.controller.resources.meta import Owner
from kubelambda.controller.resources.pool import (
    POOL_LABEL,
    POOL_PORT,
    Unresolvable,
    env_sources,
    resolved_env,
    specialize_body,
    specialized_pod_patch,
)
from kubelambda.controller.specialize import Specialized, Specializer
from kubelambda.platforms.kubernetes.errors import ApiError
from kubelambda.platforms.kubernetes.events import EventType
from kubelambda.platforms.kubernetes.kinds import CONFIG_MAP, FUNCTION, SECRET
from kubelambda.platforms.kubernetes.secrets import secret_text

__all__ = ["PoolPodCache", "WarmStarter"]

logger = logging.getLogger(__name__)
JSON = dict[str, Any]

# Past the pod's own deadline (it answers 504 when the handler's init outlasts it).
SPECIALIZE_DEADLINE: Final = 30.0
# A claimed pod may still be in a listing that began before its labels changed.
CLAIM_MEMORY_SECONDS: Final = 60.0
# Answers after which the pod is of no use to the pool (it reports failed, or, with no answer
# to a request it got, its state is unknown): it is deleted. Other failures (400, 401, 413, no
# connection) leave it in the pool: the request or the network was wrong, not the pod.
SPOILED: Final = frozenset({0, 409, 422, 504})


class _NoPod(Exception):
    """Nothing to specialise: the Function takes the Deployment path, without an Event."""


def _ready(pod: Mapping[str, Any]) -> bool:
    status = pod.get("status") or {}
    if (pod.get("metadata") or {}).get("deletionTimestamp") or not status.get("podIP"):
        return False
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or ()
    )


class PoolPodCache:
    """The unclaimed pool pods a watch (label ``kubelambda.dev/pool``) has shown, so that a
    warm start picks one without a request to the API server. ``kubelambda operator`` feeds
    it from an Informer; until its first listing (``synced``) the starter lists instead."""

    def __init__(self) -> None:
        self.synced = False
        self._pods: dict[tuple[str, str], Mapping[str, Any]] = {}

    def event(self, event_type: str, pod: Mapping[str, Any]) -> None:
        meta = pod.get("metadata") or {}
        key = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        if event_type == "DELETED" or POOL_LABEL not in (meta.get("labels") or {}):
            self._pods.pop(key, None)
        else:
            self._pods[key] = pod

    def pods(self, namespace: str, runtime: str) -> list[Mapping[str, Any]]:
        return [
            pod
            for (where, _), pod in self._pods.items()
            if where == namespace and pod["metadata"]["labels"].get(POOL_LABEL) == runtime
        ]


class WarmStarter:
    def __init__(
        self,
        *,
        manager: PoolManager,
        specializer: Specializer,
        function_object: Callable[[FunctionKey], Mapping[str, Any] | None],
        cache: PoolPodCache | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.manager = manager
        self.cluster = manager.cluster
        self.pods = manager.pods
        self.specializer = specializer
        self._function_object = function_object  # the watch's copy (the operator's store)
        self.cache = cache
        self._monotonic = monotonic
        self._slots = asyncio.Semaphore(manager.pool.concurrency)
        self._tasks: dict[FunctionKey, asyncio.Task[Instance | None]] = {}
        self._events: set[asyncio.Task[None]] = set()  # WarmStarted, written after the answer
        self._claimed: dict[str, float] = {}  # "namespace/pod" → when

    def wake(self, key: FunctionKey) -> asyncio.Task[Instance | None] | None:
        """A request found ``key`` at zero: start specialising a pool pod for it, unless one is
        under way or serves it, the pool cannot serve it, or too many wait. The task answers
        the pod that now serves the Function, or None."""
        if key in self._tasks or self.manager.serving(key):
            return self._tasks.get(key)
        body = self._function_object(key)
        if body is None:
            return None
        try:
            function = parse_function(body)
        except SpecError:
            return None
        if self.manager.cold_start(function).path != "pool":
            return None
        if len(self._tasks) >= self.manager.pool.backlog:
            logger.warning(
                "%s: %d warm starts waiting; this one takes the Deployment", key, len(self._tasks)
            )
            return None
        task = asyncio.create_task(self._warm_start(function, body))
        self._tasks[key] = task
        task.add_done_callback(lambda _: self._tasks.pop(key, None))
        return task

    async def aclose(self) -> None:
        tasks: list[asyncio.Task[Any]] = [*self._tasks.values(), *self._events]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _warm_start(self, function: Function, body: Mapping[str, Any]) -> Instance | None:
        key = FunctionKey(function.namespace, function.name)
        try:
            async with self._slots:
                return await self._specialise(function, body)
        except _NoPod as exc:
            logger.info("%s: no warm start: %s", key, exc)
        except Unresolvable as exc:
            await self._event(body, "Warning", "WarmStartSkipped", str(exc))
        except ApiError as exc:
            logger.warning("%s: warm start failed: %s", key, exc)
        except Exception:
            logger.exception("%s: warm start failed", key)
        return None

    async def _specialise(self, function: Function, body: Mapping[str, Any]) -> Instance | None:
        key = FunctionKey(function.namespace, function.name)
        started = self._monotonic()
        await self.manager.ensure(function.namespace)  # its token; a no-op almost always
        token = self.manager.token(function.namespace)
        if token is None:
            raise _NoPod("the pool's token Secret has no token")
        # The listing and the reads of code and Secrets go at once: they are the latency.
        claimed, request = await asyncio.gather(
            self._claim(function), self._request(function), return_exceptions=True
        )
        if isinstance(request, BaseException):
            if not isinstance(claimed, BaseException):
                self._claimed.pop(f"{function.namespace}/{claimed[0]}", None)
            raise request
        if isinstance(claimed, BaseException):
            raise claimed
        (name, ip), (payload, hash_) = claimed, request
        answer = Specialized(0, {}, reached=False)
        try:
            claimed_at = self._monotonic()
            answer = await self.specializer(
                pod_ip=ip, port=POOL_PORT, token=token, body=payload, deadline=SPECIALIZE_DEADLINE
            )
            if answer.status != 200:
                if answer.status == 401:
                    self.manager.refresh(function.namespace)  # read the Secret again
                if answer.status in SPOILED and answer.reached:
                    await self.pods.delete_pod(function.namespace, name, grace_seconds=0)
                await self._event(
                    body,
                    "Warning",
                    "WarmStartFailed",
                    f"pool pod {name} answered {answer.status or 'nothing'}: {answer.message};"
                    " the Deployment serves the first request",
                )
                return None
            now = self.manager.clock().astimezone(UTC)
            owner = Owner(
                name=function.name,
                namespace=function.namespace,
                uid=str(body["metadata"]["uid"]),
            )
            specialised_at = self._monotonic()
            await self.pods.patch_pod(
                function.namespace,
                name,
                specialized_pod_patch(
                    owner=owner, code_hash=hash_, at=now.strftime("%Y-%m-%dT%H:%M:%SZ")
                ),
            )
        except Exception:
            if answer.status == 200:
                # Specialised but not relabelled: of no use to the pool any more (a later claim
                # would be answered 409), nor to the Function (no Service selects it).
                with contextlib.suppress(ApiError):
                    await self.pods.delete_pod(function.namespace, name, grace_seconds=0)
            self._claimed.pop(f"{function.namespace}/{name}", None)
            raise
        except BaseException:
            self._claimed.pop(f"{function.namespace}/{name}", None)
            raise
        self.manager.remember(key, SpecializedPod(name=name, code_hash=hash_, at=now))
        done = self._monotonic()
        # The pod serves now: the Event is written while the gateway already sends to it.
        recording = asyncio.create_task(
            self._event(
                body,
                "Normal",
                "WarmStarted",
                f"pool pod {name} serves the first requests after {(done - started) * 1000:.0f} ms:"
                f" claimed and code read in {(claimed_at - started) * 1000:.0f} ms, specialised in"
                f" {(specialised_at - claimed_at) * 1000:.0f} ms (the handler's init"
                f" {answer.body.get('initMs', '?')} ms), relabelled in"
                f" {(done - specialised_at) * 1000:.0f} ms",
            )
        )
        self._events.add(recording)
        recording.add_done_callback(self._events.discard)
        return Instance(pod=name, ip=ip, port=PORT)

    async def _claim(self, function: Function) -> tuple[str, str]:
        """A ready pool pod no other warm start has claimed: its name and IP."""
        now = self._monotonic()
        for claim, at in list(self._claimed.items()):
            if now - at > CLAIM_MEMORY_SECONDS:
                del self._claimed[claim]
        runtime = function.runtime or ""
        found: list[Mapping[str, Any]]
        if self.cache is not None and self.cache.synced:
            found = self.cache.pods(function.namespace, runtime)  # a request less on the way
        else:
            found = list(
                await self.pods.list_pods(function.namespace, selector=f"{POOL_LABEL}={runtime}")
            )
        for pod in sorted(found, key=lambda p: str(p["metadata"]["name"])):
            claim = f"{function.namespace}/{pod['metadata']['name']}"
            if _ready(pod) and claim not in self._claimed:
                self._claimed[claim] = now
                return str(pod["metadata"]["name"]), str(pod["status"]["podIP"])
        raise _NoPod(f"no ready pod in the {runtime} pool")

    async def _request(self, function: Function) -> tuple[JSON, str | None]:
        """What the pod is sent, and the code hash it will run."""
        namespace = function.namespace
        env = runtime_env(function, self.manager.config)
        sources = sorted(env_sources(env))
        objects, (files, hash_) = await asyncio.gather(
            asyncio.gather(
                *(
                    self.cluster.get(
                        SECRET if kind == "Secret" else CONFIG_MAP, namespace=namespace, name=name
                    )
                    for kind, name in sources
                )
            ),
            self._files(function),
        )
        secrets: dict[str, Mapping[str, str] | None] = {}
        config_maps: dict[str, Mapping[str, str] | None] = {}
        for (kind, name), obj in zip(sources, objects, strict=True):
            if kind == "Secret":
                secrets[name] = None if obj is None else secret_text(obj)
            else:
                config_maps[name] = None if obj is None else dict(obj.get("data") or {})
        values = resolved_env(env, secrets=secrets, config_maps=config_maps)
        payload = specialize_body(namespace=namespace, name=function.name, env=values, files=files)
        return payload, hash_

    async def _files(self, function: Function) -> tuple[dict[str, str], str | None]:
        code = function.code
        if isinstance(code, InlineCode):
            return dict(code.files), code_hash(code.files)
        if not isinstance(code, ConfigMapCode):
            raise Unresolvable("the code cannot be sent to a pool pod")
        found = await self.cluster.get(CONFIG_MAP, namespace=function.namespace, name=code.name)
        if found is None:
            raise Unresolvable(f"spec.code.configMapRef: ConfigMap {code.name} does not exist")
        files = dict(found.get("data") or {})
        for key, value in (found.get("binaryData") or {}).items():
            try:
                files[key] = base64.b64decode(value).decode("utf-8")
            except (ValueError, UnicodeDecodeError):
                raise Unresolvable(f"ConfigMap {code.name}: {key} is not UTF-8 text") from None
        return files, config_map_hash(found)

    async def _event(
        self, body: Mapping[str, Any], severity: EventType, reason: str, message: str
    ) -> None:
        logger.info(
            "%s/%s: %s: %s",
            body["metadata"].get("namespace"),
            body["metadata"].get("name"),
            reason,
            message,
        )
        involved = {"apiVersion": FUNCTION.api_version, "kind": FUNCTION.kind, **body}
        await self.cluster.record_event(
            involved,
            type=severity,
            reason=reason,
            message=message,
        )
