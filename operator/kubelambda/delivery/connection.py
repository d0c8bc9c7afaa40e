"""The connection to the broker that `JetStreamStore` (jetstream.py) keeps: made in the background
and tried again while the broker is down, the work-queue stream the events live in brought to
the settings, and the writes to it: a job to its subject, a record to a destination subject.
Publishes wait for their acknowledgement on one reply subscription (publisher.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig

from kubelambda.delivery.broker import BrokerSettings
from kubelambda.delivery.codec import encode_job
from kubelambda.delivery.jobs import DeliveryJob
from kubelambda.delivery.publisher import Publisher

# The event's trace on a record published to a destination subject (X-Ray's header name).
TRACE_HEADER = "X-Amzn-Trace-Id"

__all__ = ["BrokerConnection", "BrokerUnavailable"]

log = logging.getLogger(__name__)

# JetStream's error code for a stream at its limits with the discard-new policy.
_STREAM_FULL_CODES = frozenset({10077, 10047})


class BrokerUnavailable(OSError):
    """JetStream did not take the write; the caller answers so that the client retries."""


class BrokerConnection:
    """The client, its JetStream context and the publisher, set together once `connect` made
    them (then `ready` is set)."""

    def __init__(self, settings: BrokerSettings) -> None:
        self.settings = settings
        self.nc: Client | None = None
        self.js: JetStreamContext | None = None
        self.publisher: Publisher | None = None
        self.ready = asyncio.Event()

    @property
    def connected(self) -> bool:
        return self.publisher is not None and self.nc is not None and self.nc.is_connected

    async def connect(self) -> None:
        """Connect and ensure the stream, trying again while the broker is not reachable."""
        settings = self.settings
        delay = 0.5
        while True:
            try:
                nc = await nats.connect(
                    settings.servers,
                    name="kubelambda",
                    connect_timeout=5,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=1,
                    user=settings.user,
                    password=settings.password,
                    token=settings.token,
                    user_credentials=settings.credentials_file,
                    disconnected_cb=self._disconnected,
                    reconnected_cb=self._reconnected,
                )
                js = nc.jetstream(timeout=settings.publish_timeout_seconds)
                await self._ensure_stream(js)
                publisher = await Publisher.open(nc)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("the broker at %s is not reachable yet: %s", settings.url, exc)
                await asyncio.sleep(delay)  # a backoff between tries, not a wait for a state
                delay = min(delay * 2, 10.0)
                continue
            self.nc, self.js, self.publisher = nc, js, publisher
            self.ready.set()
            log.info("asynchronous events are kept in JetStream stream %s", settings.stream)
            return

    async def aclose(self) -> None:
        if self.publisher is not None:
            await self.publisher.aclose()
        if self.nc is not None:
            # Flush what was sent (acks, write-backs), then close. Not drain: it waits for
            # messages fetched that no one will read now, up to its 30 s timeout, which is a
            # pod's whole grace period; JetStream hands those out again after ack_wait anyway.
            with contextlib.suppress(Exception):
                await self.nc.flush(timeout=5)
            with contextlib.suppress(Exception):
                await self.nc.close()

    async def _disconnected(self) -> None:
        log.warning("lost the broker at %s; reconnecting", self.settings.url)

    async def _reconnected(self) -> None:
        log.info("reconnected to the broker")

    async def _ensure_stream(self, js: JetStreamContext) -> None:
        settings = self.settings
        config = StreamConfig(
            name=settings.stream,
            subjects=[f"{settings.subject_prefix}.>"],
            # Each message is someone's to deliver; acknowledged, it is gone.
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            num_replicas=settings.replicas,
            max_age=settings.max_age_seconds,
            max_bytes=settings.max_bytes,
            max_msgs=settings.max_messages,
            max_msg_size=settings.max_message_bytes,
            # Full means "try later", never "forget the oldest".
            discard=DiscardPolicy.NEW,
            # JetStream refuses a window longer than the stream keeps messages.
            duplicate_window=min(settings.duplicate_window_seconds, settings.max_age_seconds),
        )
        try:
            await js.stream_info(settings.stream)
        except nats.js.errors.NotFoundError:
            await js.add_stream(config)
            return
        await js.update_stream(config)

    def _publisher(self) -> Publisher:
        if self.publisher is None:
            raise BrokerUnavailable(f"the broker at {self.settings.url} is not connected")
        return self.publisher

    async def publish_job(self, subject: str, job: DeliveryJob, *, msg_id: str, due: float) -> bool:
        """Write `job` to `subject`, due at wall time `due`; False when the stream is full,
        BrokerUnavailable when JetStream did not take it otherwise."""
        try:
            await self._publisher().publish(
                subject,
                encode_job(job, due_wall=due),
                msg_id=msg_id,
                ack_seconds=self.settings.publish_timeout_seconds,
            )
        except nats.js.errors.APIError as exc:
            if exc.err_code in _STREAM_FULL_CODES:
                return False
            raise BrokerUnavailable(f"JetStream refused event {job.id}: {exc}") from exc
        except (nats.errors.Error, TimeoutError) as exc:
            raise BrokerUnavailable(f"JetStream did not take event {job.id}: {exc!r}") from exc
        return True

    async def publish_record(
        self, subject: str, data: bytes, msg_id: str, *, trace: str | None = None
    ) -> None:
        """Publish an invocation record to a destination subject, which a stream of the
        user's must capture (JetStream acknowledges it); BrokerUnavailable otherwise. `trace`
        (the event's X-Amzn-Trace-Id) goes along as a message header of that name."""
        publisher = self._publisher()
        try:
            await publisher.publish(
                subject,
                data,
                msg_id=msg_id,
                ack_seconds=self.settings.publish_timeout_seconds,
                headers={TRACE_HEADER: trace} if trace else None,
            )
        except (nats.errors.Error, TimeoutError) as exc:
            raise BrokerUnavailable(f"no stream took the record on {subject}: {exc!r}") from exc
