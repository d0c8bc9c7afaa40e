"""Watches the sources of queue and kafka Triggers for TriggerReconciler: looks at each when it is
new or changed and then every ``interval_seconds``, at most ``concurrency`` at once and each
within a deadline, keeps the latest observation, and queues the Trigger again when it changed.
Reconciles only read what was observed: they never wait on a broker.

The Operator runs ``run``; the probe (delivery/observe.py's SourceProbe, a fake in tests) does
the looking, and the Trigger's Secret is read here, through the Cluster.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from kubelambda.api.streams import KafkaSource, QueueSource, queue_consumer_name
from kubelambda.api.trigger import Trigger
from kubelambda.controller.cluster import Cluster
from kubelambda.controller.resources.consumer import SECRET_NOT_FOUND, Observed
from kubelambda.delivery.endpoints import (
    INVALID_SECRET,
    CredentialsError,
    kafka_endpoint,
    nats_endpoint,
)
from kubelambda.delivery.observe import (
    OBSERVE_FAILED,
    KafkaTarget,
    Observation,
    QueueTarget,
    SourceProblem,
)
from kubelambda.platforms.kubernetes.kinds import SECRET

__all__ = ["Probe", "SourceObserver"]

log = logging.getLogger(__name__)

Source = QueueSource | KafkaSource
Key = tuple[str, str]  # namespace, Trigger name


class Probe(Protocol):
    """Looks at one source: answers within its own deadline, raises only when cancelled."""

    async def queue(self, target: QueueTarget) -> Observation: ...

    async def kafka(self, target: KafkaTarget) -> Observation: ...


def _subject(source: Source) -> Hashable:
    """What a look at ``source`` depends on: a change of anything else (a batch size) is no
    reason to look again, nor to forget what was seen."""
    if isinstance(source, QueueSource):
        return ("queue", source.stream, source.nats)
    batching = source.batching
    return (
        "kafka",
        source.bootstrap_servers,
        source.topics,
        source.consumer_group,
        source.auth,
        batching.starting_position,
        batching.starting_position_timestamp,
    )


class _MissingSecret(Exception):
    def __init__(self, problem: SourceProblem) -> None:
        super().__init__(problem.message)
        self.problem = problem


@dataclass(eq=False)
class _Watch:
    subject: Hashable
    source: Source
    observed: Observed | None = None
    due: float = 0.0
    task: asyncio.Task[None] | None = None


class SourceObserver:
    """The latest observation of each watched source, refreshed every ``interval_seconds``;
    ``changed(namespace, name)`` is called when one differs from the one before."""

    def __init__(
        self,
        *,
        probe: Probe,
        cluster: Cluster,
        clock: Callable[[], datetime],
        changed: Callable[[str, str], None],
        interval_seconds: float = 30.0,
        concurrency: int = 8,
        deadline_seconds: float = 15.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._probe = probe
        self._cluster = cluster
        self._clock = clock
        self._changed = changed
        self.interval = interval_seconds
        # Bounds the looks at once, so a thousand Triggers never mean a thousand connections.
        self._slots = asyncio.Semaphore(concurrency)
        # The probe keeps its own, shorter deadline; this one also covers reading the Secret.
        self._deadline = deadline_seconds
        self._monotonic = monotonic
        self._watches: dict[Key, _Watch] = {}
        self._looking: set[asyncio.Task[None]] = set()  # also those of forgotten sources
        self._wake = asyncio.Event()

    def __len__(self) -> int:
        return len(self._watches)

    def observe(self, trigger: Trigger, source: Source) -> Observed | None:
        """Keep looking at ``trigger``'s source; the latest observation of it, or None before
        the first (a new or changed source is looked at at once)."""
        key = (trigger.namespace, trigger.name)
        subject = _subject(source)
        watch = self._watches.get(key)
        if watch is None or watch.subject != subject:
            self._watches[key] = _Watch(subject=subject, source=source, due=self._monotonic())
            self._wake.set()
            return None
        return watch.observed

    def forget(self, namespace: str, name: str) -> None:
        """Stop looking (the Trigger is gone, invalid, or waits for its Function)."""
        self._watches.pop((namespace, name), None)

    def start_due(self) -> list[asyncio.Task[None]]:
        """Start a look at every source that is due and not being looked at."""
        now = self._monotonic()
        started = []
        for key, watch in self._watches.items():
            if watch.task is None and watch.due <= now:
                watch.task = asyncio.create_task(self._look(key, watch))
                self._looking.add(watch.task)
                watch.task.add_done_callback(self._looking.discard)
                started.append(watch.task)
        return started

    async def look_due(self) -> None:
        """Look at every source that is due, and return when all of those looks are done."""
        await asyncio.gather(*self.start_due())

    async def run(self) -> None:
        """Look at each source when it is due, until cancelled."""
        try:
            while True:
                self._wake.clear()
                self.start_due()
                waiting = [w.due for w in self._watches.values() if w.task is None]
                delay = min(waiting) - self._monotonic() if waiting else self.interval
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(delay, 0.01)):
                        await self._wake.wait()
        finally:
            tasks = list(self._looking)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _look(self, key: Key, watch: _Watch) -> None:
        try:
            async with self._slots:
                observation = await self._observation(key, watch.source)
        finally:
            watch.task = None
            watch.due = self._monotonic() + self.interval
        if self._watches.get(key) is not watch:
            return  # forgotten or changed meanwhile: this look is of nothing current
        before = watch.observed
        watch.observed = Observed(observation, self._clock())
        if before is None or before.observation != observation:
            self._changed(*key)

    async def _observation(self, key: Key, source: Source) -> Observation:
        namespace, name = key
        try:
            async with asyncio.timeout(self._deadline):
                if isinstance(source, QueueSource):
                    return await self._probe.queue(await self._queue(namespace, name, source))
                return await self._probe.kafka(await self._kafka(namespace, source))
        except _MissingSecret as missing:
            return missing.problem
        except CredentialsError as exc:
            return SourceProblem(INVALID_SECRET, str(exc))
        except TimeoutError:
            return SourceProblem(
                OBSERVE_FAILED, f"the look at the source took over {self._deadline:g} s"
            )
        except Exception as exc:
            log.exception("observing the source of Trigger %s/%s failed", namespace, name)
            return SourceProblem(OBSERVE_FAILED, f"observing the source failed: {exc!r}")

    async def _queue(self, namespace: str, name: str, source: QueueSource) -> QueueTarget:
        endpoint = None
        if source.nats is not None:
            secret = source.nats.credentials_secret
            data = None
            if secret is not None:
                data = await self._secret(namespace, secret, "spec.queue.nats.credentialsSecret")
            endpoint = nats_endpoint(source.nats.url, secret=secret, data=data)
        return QueueTarget(
            stream=source.stream,
            consumer=queue_consumer_name(namespace, name),
            endpoint=endpoint,
        )

    async def _kafka(self, namespace: str, source: KafkaSource) -> KafkaTarget:
        secret = source.auth.secret
        data = None
        if secret is not None:
            data = await self._secret(namespace, secret, "spec.kafka.auth.secretRef")
        return KafkaTarget(
            endpoint=kafka_endpoint(
                source.bootstrap_servers, tls=source.auth.tls, secret=secret, data=data
            ),
            topics=source.topics,
            group=source.consumer_group,
            starting_position=source.batching.starting_position,
            starting_timestamp=source.batching.starting_position_timestamp,
        )

    async def _secret(self, namespace: str, name: str, field: str) -> Mapping[str, str]:
        """The Secret's data as text. Read at every look, so a fixed Secret counts at the next."""
        found = await self._cluster.get(SECRET, namespace=namespace, name=name)
        if found is None:
            raise _MissingSecret(
                SourceProblem(
                    SECRET_NOT_FOUND,
                    f"Secret {name} ({field}) does not exist in namespace {namespace}",
                )
            )
        data = found.get("data") or {}
        return {
            key: base64.b64decode(value).decode("utf-8", errors="replace")
            for key, value in data.items()
        }
