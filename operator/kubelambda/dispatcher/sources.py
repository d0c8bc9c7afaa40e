"""The pollers of a dispatcher: one per queue or kafka Trigger (`QueuePoller`, `KafkaPoller`),
started, restarted on a change of the Trigger or its Function, and stopped with them; each
Trigger's last problem is kept for the metrics and the logs.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext

from kubelambda.api.function import Function
from kubelambda.api.identity import FunctionKey, function_arn
from kubelambda.api.streams import Batching, KafkaSource, NatsConnection, QueueSource
from kubelambda.api.trigger import Trigger
from kubelambda.clock import Clock
from kubelambda.delivery.broker import BrokerSettings, nats_servers
from kubelambda.delivery.endpoints import (
    CredentialsError,
    NatsEndpoint,
    kafka_endpoint,
    kafka_options,
    nats_endpoint,
    nats_options,
)
from kubelambda.dispatcher.batches import Admit, BatchInvoker, FailedRecords
from kubelambda.dispatcher.function_call import FunctionCall
from kubelambda.dispatcher.kafka import KafkaPoller
from kubelambda.dispatcher.queue import QueuePoller

__all__ = ["EventSources", "SecretReader"]

log = logging.getLogger(__name__)

# (namespace, name) → the Secret's data, decoded; None when it does not exist.
SecretReader = Callable[[str, str], Awaitable[Mapping[str, str] | None]]

# A queue poller reports its messages in progress every third of this (dispatcher/queue.py):
# only a dead poller's messages wait it out before JetStream hands them out again.
_QUEUE_ACK_WAIT_SECONDS = 15.0
_POLLED = (QueueSource, KafkaSource)


@dataclass(frozen=True, slots=True)
class _Running:
    trigger: Trigger
    function: Function
    task: asyncio.Task[None]


class EventSources:
    def __init__(
        self,
        *,
        call: FunctionCall,
        admit: Admit,
        clock: Clock,
        broker: BrokerSettings | None,
        region: str,
        account_id: str,
        default_namespace: str = "default",
        secrets: SecretReader | None = None,
    ) -> None:
        self._invoke = BatchInvoker(call, clock)
        self._failures = FailedRecords(
            admit=admit, clock=clock, default_namespace=default_namespace
        )
        self._clock = clock
        self._broker = broker
        self._region = region
        self._account_id = account_id
        self._default_namespace = default_namespace
        self._secrets = secrets
        self._running: dict[tuple[str, str], _Running] = {}
        self._connections: dict[tuple[str, str | None, str | None], Client] = {}
        # (namespace, trigger) → what stops it now; None while it polls.
        self.problems: dict[tuple[str, str], str | None] = {}
        self._started = False
        self._pending: tuple[Mapping[FunctionKey, Function], Sequence[Trigger]] | None = None

    def start(self) -> None:
        """Start polling (in a running event loop) what `update` gave."""
        self._started = True
        if self._pending is not None:
            self.update(*self._pending)

    def update(
        self, functions: Mapping[FunctionKey, Function], triggers: Sequence[Trigger]
    ) -> None:
        """Poll exactly the queue and kafka Triggers whose Function exists, as they are now
        (from `start` on)."""
        if not self._started:
            self._pending = (functions, triggers)
            return
        polled = [trigger for trigger in triggers if isinstance(trigger.source, _POLLED)]
        wanted: dict[tuple[str, str], tuple[Trigger, Function]] = {}
        for trigger in polled:
            key = (trigger.namespace, trigger.name)
            function = functions.get(FunctionKey(trigger.namespace, trigger.function))
            if function is None:
                self.problems[key] = f"Function {trigger.function} does not exist"
                continue
            wanted[key] = (trigger, function)
        for key in list(self._running):
            running = self._running[key]
            if wanted.get(key) != (running.trigger, running.function):
                running.task.cancel()
                del self._running[key]
        for key, (trigger, function) in wanted.items():
            if key not in self._running:
                task = asyncio.create_task(
                    self._poll(trigger, function), name=f"{_kind(trigger)} {key[0]}/{key[1]}"
                )
                self._running[key] = _Running(trigger, function, task)
        known = {(trigger.namespace, trigger.name) for trigger in polled}
        for key in list(self.problems):
            if key not in known:
                del self.problems[key]

    async def aclose(self) -> None:
        tasks = [running.task for running in self._running.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._running.clear()
        for client in self._connections.values():
            with contextlib.suppress(Exception):
                await client.close()
        self._connections.clear()

    async def _poll(self, trigger: Trigger, function: Function) -> None:
        source = trigger.source
        on_state = self._reporter(trigger)
        poller: QueuePoller | KafkaPoller
        if isinstance(source, KafkaSource):
            poller = KafkaPoller(
                trigger=trigger,
                source=source,
                options=lambda: self._kafka_options(trigger, source),
                invoke=self._invoke,
                failures=self._failures,
                invoked_arn=self._invoked_arn(trigger),
                concurrency=_concurrency(source.batching, function),
                clock=self._clock,
                on_state=on_state,
            )
        elif isinstance(source, QueueSource):
            poller = QueuePoller(
                trigger=trigger,
                source=source,
                js=await self._reach_nats(trigger, source, on_state),
                invoke=self._invoke,
                failures=self._failures,
                invoked_arn=self._invoked_arn(trigger),
                concurrency=_concurrency(source.batching, function),
                ack_wait_seconds=_QUEUE_ACK_WAIT_SECONDS,
                clock=self._clock,
                region=self._region,
                account_id=self._account_id,
                on_state=on_state,
            )
        else:
            raise TypeError(f"Trigger {trigger.name} has no queue or kafka source")
        await poller.run()

    async def _reach_nats(
        self, trigger: Trigger, source: QueueSource, on_state: Callable[[str | None], None]
    ) -> JetStreamContext:
        delay = 1.0
        while True:
            try:
                return await self._jetstream(trigger, source.nats)
            except (LookupError, CredentialsError) as exc:
                on_state(str(exc))
            except Exception as exc:  # every way a connection fails: reported, tried again
                on_state(f"cannot reach NATS: {exc!r}")
            await asyncio.sleep(delay)  # a backoff between tries, not a wait for a state
            delay = min(delay * 2, 30.0)

    def _invoked_arn(self, trigger: Trigger) -> str:
        return function_arn(
            FunctionKey(trigger.namespace, trigger.function),
            region=self._region,
            account_id=self._account_id,
            default_namespace=self._default_namespace,
        )

    def _reporter(self, trigger: Trigger) -> Callable[[str | None], None]:
        """Keeps a Trigger's problem (None while it polls) and logs each change of it."""
        key = (trigger.namespace, trigger.name)
        kind = _kind(trigger)

        def on_state(problem: str | None) -> None:
            if problem != self.problems.get(key):
                if problem is None:
                    log.info("%s %s/%s: consuming %s", kind, *key, _what(trigger))
                else:
                    log.warning("%s %s/%s: %s", kind, *key, problem)
            self.problems[key] = problem

        return on_state

    async def _secret(self, trigger: Trigger, name: str, *, field: str) -> Mapping[str, str]:
        """The Secret a Trigger's `field` names, in the Trigger's namespace."""
        if self._secrets is None:
            raise LookupError(
                f"{field} {name}: Secrets are read on a cluster only, and local mode has none"
            )
        data = await self._secrets(trigger.namespace, name)
        if data is None:
            raise LookupError(f"Secret {name} does not exist")
        return data

    async def _kafka_options(self, trigger: Trigger, source: KafkaSource) -> dict[str, Any]:
        """The client settings of a kafka Trigger, from its auth and its Secret, read afresh
        at each connect (a Secret mended later counts)."""
        name = source.auth.secret
        data = None if name is None else await self._secret(trigger, name, field="auth.secretRef")
        try:
            endpoint = kafka_endpoint(
                source.bootstrap_servers, tls=source.auth.tls, secret=name, data=data
            )
            return kafka_options(endpoint)
        except CredentialsError as exc:
            raise LookupError(str(exc)) from exc  # the poller's word for a problem to report

    async def _jetstream(self, trigger: Trigger, other: NatsConnection | None) -> JetStreamContext:
        """The connection a queue Trigger reads through: the platform's broker, or the NATS it
        names (with the credentials of its Secret); shared by the Triggers naming the same."""
        if other is None:
            broker = self._broker
            if broker is None:
                raise LookupError(
                    "no broker: a queue Trigger without nats.url reads the platform's NATS (--nats)"
                )
            ident: tuple[str, str | None, str | None] = (broker.url, None, None)
            endpoint = NatsEndpoint.of_broker(broker)
        else:
            ident = (other.url, trigger.namespace, other.credentials_secret)
            endpoint = await self._nats_endpoint(trigger, other)
        client = self._connections.get(ident)
        if client is None or client.is_closed:
            client = await nats.connect(
                nats_servers(ident[0]),
                name="kubelambda-sources",
                connect_timeout=5,
                max_reconnect_attempts=-1,
                reconnect_time_wait=1,
                **nats_options(endpoint),
            )
            self._connections[ident] = client
        return client.jetstream()

    async def _nats_endpoint(self, trigger: Trigger, other: NatsConnection) -> NatsEndpoint:
        """The NATS a queue Trigger names, with the credentials of its Secret (read afresh)."""
        name = other.credentials_secret
        field = "nats.credentialsSecret"
        data = None if name is None else await self._secret(trigger, name, field=field)
        return nats_endpoint(other.url, secret=name, data=data)


def _kind(trigger: Trigger) -> str:
    return "kafka" if isinstance(trigger.source, KafkaSource) else "queue"


def _what(trigger: Trigger) -> str:
    """What a Trigger's poller consumes, for the log."""
    source = trigger.source
    if isinstance(source, KafkaSource):
        return f"topics {','.join(source.topics)} as group {source.consumer_group}"
    assert isinstance(source, QueueSource)
    return f"stream {source.stream}"


def _concurrency(batching: Batching, function: Function) -> int:
    """Batches in flight at most: maximumConcurrency, else what the Function can run at once."""
    return batching.maximum_concurrency or function.scaling.max_replicas * function.concurrency


def decoded(data: Mapping[str, str]) -> dict[str, str]:
    """A Secret's `data` (base64) as text."""
    return {key: base64.b64decode(value).decode("utf-8") for key, value in data.items()}
