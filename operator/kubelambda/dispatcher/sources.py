"""The pollers of a dispatcher: one per queue (and Kafka) Trigger, started, restarted on a change
of the Trigger or its Function, and stopped with them; each Trigger's last problem is kept for
the metrics and the logs.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import tempfile
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext

from kubelambda.api.function import Function
from kubelambda.api.identity import FunctionKey, function_arn
from kubelambda.api.streams import NatsConnection, QueueSource
from kubelambda.api.trigger import Trigger
from kubelambda.clock import Clock
from kubelambda.delivery.jetstream import BrokerSettings
from kubelambda.dispatcher.batches import Admit, BatchInvoker, FailedRecords
from kubelambda.dispatcher.delivery import FunctionCall
from kubelambda.dispatcher.queue import QueuePoller

__all__ = ["EventSources", "SecretReader"]

log = logging.getLogger(__name__)

# (namespace, name) → the Secret's data, decoded; None when it does not exist.
SecretReader = Callable[[str, str], Awaitable[Mapping[str, str] | None]]

# JetStream hands a message out again this long after its function's timeout, plus the time
# the gateway may hold a batch for an instance.
_ACK_MARGIN_SECONDS = 10.0


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
        hold_timeout_seconds: float = 60.0,
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
        self._hold = hold_timeout_seconds
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
        """Poll exactly the queue Triggers whose Function exists, as they are now (from
        `start` on)."""
        if not self._started:
            self._pending = (functions, triggers)
            return
        wanted: dict[tuple[str, str], tuple[Trigger, Function]] = {}
        for trigger in triggers:
            if not isinstance(trigger.source, QueueSource):
                continue
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
                    self._poll(trigger, function), name=f"queue {key[0]}/{key[1]}"
                )
                self._running[key] = _Running(trigger, function, task)
        for key in list(self.problems):
            if key not in wanted and key not in {
                (t.namespace, t.name) for t in triggers if isinstance(t.source, QueueSource)
            }:
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
        assert isinstance(source, QueueSource)
        key = (trigger.namespace, trigger.name)

        def on_state(problem: str | None) -> None:
            if problem != self.problems.get(key):
                if problem is None:
                    log.info("queue %s/%s: consuming stream %s", *key, source.stream)
                else:
                    log.warning("queue %s/%s: %s", *key, problem)
            self.problems[key] = problem

        delay = 1.0
        while True:
            try:
                js = await self._jetstream(trigger, source.nats)
                break
            except LookupError as exc:
                on_state(str(exc))
            except Exception as exc:  # every way a connection fails: reported, tried again
                on_state(f"cannot reach NATS: {exc!r}")
            await asyncio.sleep(delay)  # a backoff between tries, not a wait for a state
            delay = min(delay * 2, 30.0)
        batching = source.batching
        poller = QueuePoller(
            trigger=trigger,
            source=source,
            js=js,
            invoke=self._invoke,
            failures=self._failures,
            invoked_arn=function_arn(
                FunctionKey(trigger.namespace, trigger.function),
                region=self._region,
                account_id=self._account_id,
                default_namespace=self._default_namespace,
            ),
            concurrency=batching.maximum_concurrency
            or function.scaling.max_replicas * function.concurrency,
            ack_wait_seconds=function.timeout_seconds + self._hold + _ACK_MARGIN_SECONDS,
            clock=self._clock,
            region=self._region,
            account_id=self._account_id,
            on_state=on_state,
        )
        await poller.run()

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
            options = {
                "user": broker.user,
                "password": broker.password,
                "token": broker.token,
                "user_credentials": broker.credentials_file,
            }
        else:
            ident = (other.url, trigger.namespace, other.credentials_secret)
            options = await self._credentials(trigger, other)
        client = self._connections.get(ident)
        if client is None or client.is_closed:
            client = await nats.connect(
                ident[0],
                name="kubelambda-sources",
                connect_timeout=5,
                max_reconnect_attempts=-1,
                reconnect_time_wait=1,
                **options,
            )
            self._connections[ident] = client
        return client.jetstream()

    async def _credentials(self, trigger: Trigger, other: NatsConnection) -> dict[str, str | None]:
        if other.credentials_secret is None:
            return {}
        if self._secrets is None:
            raise LookupError(
                f"nats.credentialsSecret {other.credentials_secret}: Secrets are read on a "
                "cluster only"
            )
        data = await self._secrets(trigger.namespace, other.credentials_secret)
        if data is None:
            raise LookupError(f"Secret {other.credentials_secret} does not exist")
        if "creds" in data:
            # nats-py reads a credentials file: written where only this process reads it.
            handle, path = tempfile.mkstemp(prefix="nats-", suffix=".creds")
            with os.fdopen(handle, "w") as file:
                file.write(data["creds"])
            return {"user_credentials": path}
        if "token" in data:
            return {"token": data["token"]}
        if "user" in data and "password" in data:
            return {"user": data["user"], "password": data["password"]}
        raise LookupError(
            f"Secret {other.credentials_secret} holds none of the keys user and password, "
            "token, creds"
        )


def decoded(data: Mapping[str, str]) -> dict[str, str]:
    """A Secret's `data` (base64) as text."""
    return {key: base64.b64decode(value).decode("utf-8") for key, value in data.items()}
