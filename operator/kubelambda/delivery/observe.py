"""Observes the source of a queue or kafka Trigger from outside its consumer: where the
dispatcher's durable JetStream consumer or Kafka consumer group stands and how far behind it is,
or what keeps it from its source (a stream or topic that does not exist, a broker out of reach,
refused credentials). The operator's SourceObserver (controller/observer.py) calls `SourceProbe`.

Each call ends within its deadline; clients are kept per endpoint, the few most recently used.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import nats
import nats.errors
import nats.js.errors
from aiokafka import AIOKafkaConsumer  # type: ignore[import-untyped]
from aiokafka.admin import AIOKafkaAdminClient  # type: ignore[import-untyped]
from aiokafka.errors import KafkaError  # type: ignore[import-untyped]
from nats.aio.client import Client

from kubelambda.api.streams import Position
from kubelambda.delivery.broker import BrokerSettings, nats_servers
from kubelambda.delivery.client_pool import ClientPool
from kubelambda.delivery.endpoints import (
    INVALID_SECRET,
    CredentialsError,
    KafkaEndpoint,
    NatsEndpoint,
    kafka_options,
    nats_options,
    redacted,
)
from kubelambda.delivery.kafka_groups import (
    PartitionLag,
    committed_offsets,
    group_lag,
    missing_topics,
)
from kubelambda.delivery.reachability import described, kafka_refusal, kafka_unreachable

__all__ = [
    "AUTHENTICATION_FAILED",
    "BROKER_UNREACHABLE",
    "OBSERVE_FAILED",
    "STREAM_NOT_FOUND",
    "TOPIC_NOT_FOUND",
    "Consuming",
    "KafkaTarget",
    "NotConsumed",
    "Observation",
    "PartitionLag",
    "QueueTarget",
    "SourceProbe",
    "SourceProblem",
]

# Why a source cannot be consumed: the Ready condition's reasons (INVALID_SECRET is endpoints').
STREAM_NOT_FOUND: Final = "StreamNotFound"
TOPIC_NOT_FOUND: Final = "TopicNotFound"
BROKER_UNREACHABLE: Final = "BrokerUnreachable"
AUTHENTICATION_FAILED: Final = "AuthenticationFailed"
# The look itself failed in a way that says nothing sure about the source.
OBSERVE_FAILED: Final = "ObserveFailed"


@dataclass(frozen=True, kw_only=True)
class Consuming:
    """The consumer exists and is ``lag`` records behind its source. ``position``, for a queue:
    the stream sequence up to which every message is acknowledged (JetStream's ack floor);
    ``partitions``, for Kafka: each partition, by topic and partition."""

    consumer: str
    lag: int
    position: int | None = None
    partitions: tuple[PartitionLag, ...] = ()


@dataclass(frozen=True)
class NotConsumed:
    """The source is there, its consumer not yet: no dispatcher has polled it."""

    message: str


@dataclass(frozen=True)
class SourceProblem:
    """What keeps the source from being consumed: a CamelCase reason and a message that names
    the stream, topics or broker."""

    reason: str
    message: str


Observation = Consuming | NotConsumed | SourceProblem


@dataclass(frozen=True, kw_only=True)
class QueueTarget:
    """A queue Trigger's durable ``consumer`` of JetStream ``stream``; ``endpoint`` None is the
    platform's broker."""

    stream: str
    consumer: str
    endpoint: NatsEndpoint | None = None


@dataclass(frozen=True, kw_only=True)
class KafkaTarget:
    """A kafka Trigger's consumer ``group`` of ``topics``; where a partition the group has no
    offset on starts (its lag counts from there)."""

    endpoint: KafkaEndpoint
    topics: tuple[str, ...]
    group: str
    starting_position: Position
    starting_timestamp: datetime | None = None


class _OpenFailed(Exception):
    """Opening a client ran into a problem of the source's: out of reach, or refusing us."""

    def __init__(self, problem: SourceProblem) -> None:
        super().__init__(problem.message)
        self.problem = problem


@dataclass
class _KafkaClients:
    admin: Any
    consumer: Any


class SourceProbe:
    """Looks at sources for the operator: ``queue`` and ``kafka`` answer within
    ``timeout_seconds`` and never raise (but on cancellation). ``broker`` is the platform's NATS
    (None: queue Triggers on it are not observed). Call ``aclose`` at the end."""

    def __init__(
        self,
        *,
        broker: BrokerSettings | None,
        timeout_seconds: float = 5.0,
        connections: int = 16,
    ) -> None:
        self._broker = NatsEndpoint.of_broker(broker) if broker is not None else None
        self.timeout = timeout_seconds
        self._nats: ClientPool[NatsEndpoint, Client] = ClientPool(
            size=connections, close=_close_nats, alive=lambda client: client.is_connected
        )
        self._kafka: ClientPool[KafkaEndpoint, _KafkaClients] = ClientPool(
            size=connections, close=self._close_kafka, alive=lambda clients: True
        )

    @property
    def open_clients(self) -> int:
        """How many NATS and Kafka clients are kept (at most ``connections`` of each)."""
        return len(self._nats) + len(self._kafka)

    async def aclose(self) -> None:
        await self._nats.aclose()
        await self._kafka.aclose()

    # --- queue: a JetStream stream and its durable consumer --------------------------------

    async def queue(self, target: QueueTarget) -> Observation:
        endpoint = target.endpoint or self._broker
        if endpoint is None:
            return SourceProblem(
                OBSERVE_FAILED,
                f"the operator has no broker (--nats): stream {target.stream} on the platform's"
                " NATS is not observed",
            )
        where = f"NATS at {redacted(endpoint.url)}"
        client: Client | None = None
        try:
            async with asyncio.timeout(self.timeout):
                client = await self._nats.get(endpoint, lambda: self._connect_nats(endpoint))
                return await _consumer_state(client, target, where, self.timeout)
        except _OpenFailed as refused:
            return refused.problem
        except TimeoutError:
            self._nats.drop(endpoint, client)
            return SourceProblem(
                BROKER_UNREACHABLE, f"no answer from {where} within {self.timeout:g} s"
            )
        except (nats.errors.Error, OSError) as exc:
            self._nats.drop(endpoint, client)
            return SourceProblem(BROKER_UNREACHABLE, f"{where}: {described(exc)}")

    async def _connect_nats(self, endpoint: NatsEndpoint) -> Client:
        seen: list[BaseException] = []

        async def note(exc: BaseException) -> None:
            seen.append(exc)  # nats-py reports each failed attempt here (and logs nothing)

        options = nats_options(endpoint)
        try:
            # One attempt and one retry (nats-py loops forever at 0), never a reconnect: a
            # probe wants an answer now, and a connection that broke is opened anew.
            return await nats.connect(
                nats_servers(endpoint.url),
                name="kubelambda-observer",
                connect_timeout=self.timeout,
                allow_reconnect=False,
                max_reconnect_attempts=1,
                reconnect_time_wait=0.1,
                error_cb=note,
                **options,
            )
        except (nats.errors.Error, OSError) as exc:
            raise _OpenFailed(_nats_refusal(exc, seen, endpoint)) from exc

    # --- kafka: topics and a consumer group's committed offsets ----------------------------

    async def kafka(self, target: KafkaTarget) -> Observation:
        endpoint = target.endpoint
        where = f"Kafka at {','.join(endpoint.bootstrap_servers)}"
        waiting: list[str] = []  # what the look was waiting for, named if time runs out
        try:
            async with asyncio.timeout(self.timeout):
                try:
                    return await self._kafka_look(target, where, waiting)
                except KafkaError as exc:
                    if kafka_refusal(exc, endpoint=endpoint) is not None:
                        raise
                    # A kept client whose broker went away (or moved) fails its request; a
                    # new one says why, as a first connection does.
                    return await self._kafka_look(target, where, waiting)
        except _OpenFailed as refused:
            return refused.problem
        except CredentialsError as exc:
            return SourceProblem(INVALID_SECRET, str(exc))
        except TimeoutError:
            pending = f" (waiting for {waiting[-1]})" if waiting else ""
            return SourceProblem(
                BROKER_UNREACHABLE, f"no answer from {where} within {self.timeout:g} s{pending}"
            )
        except KafkaError as exc:
            refusal = kafka_refusal(exc, endpoint=endpoint)
            if refusal is not None:
                return SourceProblem(AUTHENTICATION_FAILED, f"{where} {refusal}")
            return SourceProblem(OBSERVE_FAILED, f"{where}: {described(exc)}")

    async def _kafka_look(self, target: KafkaTarget, where: str, waiting: list[str]) -> Observation:
        endpoint = target.endpoint
        clients = await self._kafka.get(endpoint, lambda: self._open_kafka(endpoint))
        try:
            return await _group_state(clients, target, where, waiting)
        except BaseException:
            self._kafka.drop(endpoint, clients)
            raise

    async def _open_kafka(self, endpoint: KafkaEndpoint) -> _KafkaClients:
        options = kafka_options(endpoint)
        # aiokafka only says "Unable to bootstrap" when no server takes it; one connection of
        # our own says why (refused, a wrong password, TLS), as the reason needs.
        unreachable = await kafka_unreachable(endpoint, options, seconds=self.timeout)
        if unreachable is not None:
            reason = AUTHENTICATION_FAILED if unreachable.refused else BROKER_UNREACHABLE
            raise _OpenFailed(SourceProblem(reason, unreachable.message))
        common = {
            "bootstrap_servers": list(endpoint.bootstrap_servers),
            "client_id": "kubelambda-observer",
            "request_timeout_ms": int(self.timeout * 1000),
            **options,
        }
        admin = AIOKafkaAdminClient(**common)
        # No group_id: this consumer never joins the Trigger's group (it would take partitions
        # from the dispatcher); it only asks where partitions begin and end.
        consumer = AIOKafkaConsumer(enable_auto_commit=False, **common)
        clients = _KafkaClients(admin, consumer)
        try:
            await admin.start()
            await consumer.start()
        except BaseException:
            await self._close_kafka(clients)
            raise
        return clients

    async def _close_kafka(self, clients: _KafkaClients) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self.timeout):
                await clients.consumer.stop()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self.timeout):
                await clients.admin.close()


async def _close_nats(client: Client) -> None:
    with contextlib.suppress(Exception):
        async with asyncio.timeout(2.0):
            await client.close()


def _nats_refusal(
    exc: BaseException, seen: list[BaseException], endpoint: NatsEndpoint
) -> SourceProblem:
    where = f"NATS at {redacted(endpoint.url)}"
    texts = " ".join(str(error) for error in (exc, *seen)).lower()
    refused = isinstance(
        exc, nats.errors.AuthorizationError | nats.errors.InvalidUserCredentialsError
    ) or any(word in texts for word in ("authorization violation", "authentication"))
    if refused:
        return SourceProblem(
            AUTHENTICATION_FAILED, f"{where} refused {endpoint.credentials}: {described(exc)}"
        )
    cause = seen[-1] if isinstance(exc, nats.errors.NoServersError) and seen else exc
    return SourceProblem(BROKER_UNREACHABLE, f"cannot reach {where}: {described(cause)}")


async def _consumer_state(
    client: Client, target: QueueTarget, where: str, seconds: float
) -> Observation:
    js = client.jetstream(timeout=seconds)
    try:
        await js.stream_info(target.stream)
    except nats.js.errors.NotFoundError:
        return SourceProblem(
            STREAM_NOT_FOUND, f"JetStream stream {target.stream} does not exist on {where}"
        )
    except (nats.errors.NoRespondersError, nats.js.errors.ServiceUnavailableError):
        return SourceProblem(BROKER_UNREACHABLE, f"{where} answers without JetStream")
    try:
        info = await js.consumer_info(target.stream, target.consumer)
    except nats.js.errors.NotFoundError:
        return NotConsumed(
            f"JetStream stream {target.stream} on {where} has no consumer {target.consumer}"
            " yet: no dispatcher has polled it"
        )
    # Not yet delivered, and delivered but not acknowledged: what is still to be done.
    lag = int(info.num_pending or 0) + int(info.num_ack_pending or 0)
    floor = info.ack_floor.stream_seq if info.ack_floor is not None else 0
    return Consuming(consumer=target.consumer, lag=lag, position=int(floor or 0))


async def _group_state(
    clients: _KafkaClients, target: KafkaTarget, where: str, waiting: list[str]
) -> Observation:
    waiting.append("the cluster's topics")
    missing, partitions = await missing_topics(clients.admin, target.topics)
    if missing:
        hint = "" if target.endpoint.username is None else " (or its user may not describe it)"
        return SourceProblem(
            TOPIC_NOT_FOUND,
            f"Kafka topic{'s' if len(missing) > 1 else ''} {', '.join(missing)} does not exist"
            f" on {where}{hint}",
        )
    waiting.append(f"the offsets of consumer group {target.group}")
    committed = await committed_offsets(clients.admin, target.group, partitions)
    if not any(offset >= 0 for offset in committed.values()):
        return NotConsumed(
            f"consumer group {target.group} has committed no offset on topics"
            f" {', '.join(target.topics)} of {where} yet: no dispatcher has consumed them"
        )
    waiting.append("the partitions' end offsets")
    rows = await group_lag(
        clients.consumer,
        committed=committed,
        starting_position=target.starting_position,
        starting_timestamp=target.starting_timestamp,
    )
    return Consuming(consumer=target.group, lag=sum(row.lag for row in rows), partitions=rows)
