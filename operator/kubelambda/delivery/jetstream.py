"""A `DeliveryStore` on NATS JetStream: accepted events live in a file-backed stream, not in a
process, so no gateway or dispatcher restart loses one.

The gateway publishes (`admit` returns once JetStream acknowledged the write; the job id is
the message id, so a client's retry of the same event is stored once). Dispatchers take:
each function's events come through a durable pull consumer of their own subject, whose
`max_ack_pending` caps that function's asynchronous invocations in flight, so one function's
backlog cannot starve the others; consumers exist only for functions with a backlog. A job
being delivered is acknowledged when done; a retry is written back to the retries subject
with its tries and due time, then acknowledged; a dispatcher that dies mid-delivery leaves
its jobs unacknowledged, and JetStream hands them out again after `ack_wait`.

Per event this is on the hot path of local mode's one process: a lane keeps a pull request
waiting at the server (pulls.py) instead of asking after each acknowledgement, and publishes
wait for their acknowledgement on one reply subscription (publisher.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)

from kubelambda.api.identity import FunctionKey
from kubelambda.clock import Clock
from kubelambda.delivery.broker import BrokerSettings
from kubelambda.delivery.codec import decode_job, encode_job
from kubelambda.delivery.jobs import DeliveryJob
from kubelambda.delivery.publisher import Publisher
from kubelambda.delivery.pulls import KeptPull

# The event's trace on a record published to a destination subject (X-Ray's header name).
TRACE_HEADER = "X-Amzn-Trace-Id"

__all__ = ["Backlog", "BrokerUnavailable", "JetStreamStore"]

log = logging.getLogger(__name__)

# JetStream's error code for a stream at its limits with the discard-new policy.
_STREAM_FULL_CODES = frozenset({10077, 10047})
# A lane whose pull requests brought nothing this many times in a row (each waits `fetch_wait`)
# is closed; `_follow` opens it again when its subject has a backlog.
_IDLE_REQUESTS = 10


def _replacing(job: DeliveryJob, msg: Msg) -> str:
    """The message id of a job written back in place of `msg`: named after the message it
    replaces, so writing the same replacement twice (a publish whose answer was lost, then the
    original again after a nak) stores it once, while a job written back twice with the same
    tries (stopped by one dispatcher's shutdown, then by the next's) is a new message, not a
    duplicate dropped in the window while its original is acknowledged."""
    return f"{job.id}/{msg.metadata.sequence.stream}"


@dataclass(frozen=True, slots=True)
class Backlog:
    """A function's events waiting on its subject: how many, and when the oldest was accepted
    (wall time; None when unknown). Retries waiting out their backoff are not counted: they wait
    on the retries subject, shared by every function."""

    messages: int
    oldest_enqueued_at: float | None


class BrokerUnavailable(OSError):
    """JetStream did not take the write; the caller answers so that the client retries."""


class _Lane:
    """One subject's consumer; the consumer's `max_ack_pending` (`limit`) bounds the jobs of it
    that the dispatchers hold."""

    def __init__(self, subject: str, consumer: str, limit: int) -> None:
        self.subject = subject
        self.consumer = consumer
        self.limit = limit
        self.task: asyncio.Task[None] | None = None


class JetStreamStore:
    def __init__(
        self,
        settings: BrokerSettings,
        *,
        clock: Clock,
        consume: bool = False,
        fetch_wait: float = 2.0,
    ) -> None:
        self.settings = settings
        self._consume = consume
        self._clock = clock
        self._fetch_wait = fetch_wait
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._publisher: Publisher | None = None
        self._ready = asyncio.Event()
        self._taken: dict[int, Msg] = {}
        self._due: asyncio.Queue[DeliveryJob] = asyncio.Queue(maxsize=1)
        self._lanes: dict[str, _Lane] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.backlog: dict[str, int] = {}  # subject → messages in the stream, last seen

    # --- connecting ----------------------------------------------------------------------

    def start(self) -> None:
        """Connect (in the background, retrying while the broker is down) and, for a
        dispatcher (`consume`), follow the subjects with a backlog."""
        if self._tasks:
            return
        self._tasks.append(asyncio.create_task(self._connect(), name="jetstream-connect"))
        if self._consume:
            self._tasks.append(asyncio.create_task(self._follow(), name="jetstream-follow"))
            self._tasks.append(asyncio.create_task(self._heartbeat(), name="jetstream-beat"))

    async def aclose(self) -> None:
        tasks = [*self._tasks, *(lane.task for lane in self._lanes.values() if lane.task)]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._publisher is not None:
            await self._publisher.aclose()
        if self._nc is not None:
            # Flush what was sent (acks, write-backs), then close. Not drain: it waits for
            # messages fetched that no one will read now, up to its 30 s timeout, which is a
            # pod's whole grace period; JetStream hands those out again after ack_wait anyway.
            with contextlib.suppress(Exception):
                await self._nc.flush(timeout=5)
            with contextlib.suppress(Exception):
                await self._nc.close()

    async def wait_ready(self) -> None:
        await self._ready.wait()

    async def _connect(self) -> None:
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
            self._nc, self._js, self._publisher = nc, js, publisher
            self._ready.set()
            log.info("asynchronous events are kept in JetStream stream %s", settings.stream)
            return

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

    # --- the gateway's side ----------------------------------------------------------------

    async def admit(self, jobs: Sequence[DeliveryJob]) -> bool:
        publisher = self._publisher
        if publisher is None or self._nc is None or not self._nc.is_connected:
            raise BrokerUnavailable(f"the broker at {self.settings.url} is not connected")
        wall = self._clock.wall()
        for job in jobs:
            subject = self._subject(job)
            if not await self._publish(publisher, subject, job, msg_id=job.id, due=wall):
                return False
        return True

    def _subject(self, job: DeliveryJob) -> str:
        if job.function is not None:
            return self.settings.events_subject(job.function)
        return self.settings.urls_subject

    async def _publish(
        self, publisher: Publisher, subject: str, job: DeliveryJob, *, msg_id: str, due: float
    ) -> bool:
        try:
            await publisher.publish(
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
        publisher = self._publisher
        if publisher is None:
            raise BrokerUnavailable(f"the broker at {self.settings.url} is not connected")
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

    # --- the dispatcher's side -------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._taken) + self._due.qsize()

    async def take(self) -> DeliveryJob:
        return await self._due.get()

    async def done(self, job: DeliveryJob) -> None:
        taken = self._taken.pop(id(job), None)
        if taken is None:
            return
        with contextlib.suppress(nats.errors.Error):
            await taken.ack()

    async def retry(self, job: DeliveryJob, *, due: float) -> None:
        taken = self._taken.pop(id(job), None)
        if taken is None:
            return
        due_wall = self._clock.wall() + max(0.0, due - self._clock.monotonic())
        try:
            assert self._publisher is not None  # a taken job came through the connection
            stored = await self._publish(
                self._publisher,
                self.settings.retries_subject,
                job,
                msg_id=_replacing(job, taken),
                due=due_wall,
            )
        except BrokerUnavailable:
            stored = False
        if stored:
            with contextlib.suppress(nats.errors.Error):
                await taken.ack()
            return
        # Not written back: the original comes again later, with the tries it had.
        with contextlib.suppress(nats.errors.Error):
            await taken.nak(delay=max(1.0, due_wall - self._clock.wall()))

    async def waiting(self) -> dict[FunctionKey, Backlog]:
        """Each function's events on its subject, with the oldest one's acceptance time (one
        direct read of the subject's first message per function with a backlog)."""
        js = self._js
        if js is None:
            raise BrokerUnavailable(f"the broker at {self.settings.url} is not connected")
        prefix = f"{self.settings.subject_prefix}.events."
        info = await js.stream_info(self.settings.stream, subjects_filter=f"{prefix}>")
        waiting: dict[FunctionKey, Backlog] = {}
        for subject, count in (info.state.subjects or {}).items():
            namespace, _, name = subject.removeprefix(prefix).partition(".")
            if count and name:
                oldest = await self._oldest(js, subject)
                waiting[FunctionKey(namespace, name)] = Backlog(count, oldest)
        return waiting

    async def _oldest(self, js: JetStreamContext, subject: str) -> float | None:
        try:
            first = await js.get_msg(self.settings.stream, subject=subject, next=True)
            job, _ = decode_job(first.data or b"")
        except nats.js.errors.NotFoundError:
            return None  # taken meanwhile
        except (ValueError, KeyError, TypeError):
            return None  # unreadable: delivery drops it, with a log line
        return job.enqueued_at

    async def _follow(self) -> None:
        """Start a lane for each subject with a backlog (and always the retries' and the
        URL deliveries'), every second."""
        await self._ready.wait()
        settings = self.settings
        fixed = {
            settings.retries_subject: 10_000,
            settings.urls_subject: settings.function_concurrency,
        }
        while True:
            try:
                assert self._js is not None
                info = await self._js.stream_info(
                    settings.stream, subjects_filter=f"{settings.subject_prefix}.>"
                )
                self.backlog = dict(info.state.subjects or {})
            except (nats.errors.Error, TimeoutError) as exc:
                log.warning("cannot read the stream's backlog: %s", exc)
            else:
                for subject, count in [*fixed.items(), *self.backlog.items()]:
                    lane = self._lanes.get(subject)
                    if count and (lane is None or lane.task is None or lane.task.done()):
                        limit = fixed.get(subject, settings.function_concurrency)
                        self._open(subject, limit)
            await asyncio.sleep(1.0)  # a period, not a wait for a state

    def _open(self, subject: str, limit: int) -> None:
        consumer = "c_" + subject.removeprefix(self.settings.subject_prefix + ".").replace(".", "_")
        lane = self._lanes.get(subject) or _Lane(subject, consumer, limit)
        self._lanes[subject] = lane
        lane.task = asyncio.create_task(self._pull(lane), name=f"pull {subject}")

    async def _pull(self, lane: _Lane) -> None:
        settings = self.settings
        assert self._js is not None and self._nc is not None
        config = ConsumerConfig(
            durable_name=lane.consumer,
            filter_subject=lane.subject,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=settings.ack_wait_seconds,
            max_ack_pending=lane.limit,
            max_deliver=-1,
            inactive_threshold=settings.consumer_idle_seconds,
        )
        try:
            # Created, or brought to these settings if it exists: a durable consumer outlives
            # dispatchers, and a changed ack wait or concurrency must reach it.
            await self._js.add_consumer(settings.stream, config)
        except (nats.errors.Error, TimeoutError) as exc:
            log.warning("cannot consume %s: %s", lane.subject, exc)
            return
        # Asked for as many as the consumer lets out unacknowledged: the server holds the rest
        # of the request until acknowledgements make room, and sends at once then.
        pull = KeptPull(
            self._nc,
            stream=settings.stream,
            consumer=lane.consumer,
            batch=lane.limit,
            expires=self._fetch_wait,
            deliver=self._arrived,
        )
        try:
            await pull.run(idle_limit=_IDLE_REQUESTS)
        except (nats.errors.Error, TimeoutError) as exc:
            log.warning("pulling %s: %s", lane.subject, exc)  # `_follow` opens it again

    async def _arrived(self, msg: Msg) -> None:
        try:
            job, due_wall = decode_job(msg.data)
        except (ValueError, KeyError, TypeError) as exc:
            # Never delivered half-understood, never blocking the subject.
            log.error("dropping an unreadable message on %s: %s", msg.subject, exc)
            with contextlib.suppress(nats.errors.Error):
                await msg.term()
            return
        wait = due_wall - self._clock.wall()
        if wait > 0:
            with contextlib.suppress(nats.errors.Error):
                await msg.nak(delay=wait)
            return
        job.due = self._clock.monotonic()
        self._taken[id(job)] = msg
        try:
            await self._due.put(job)
        except asyncio.CancelledError:
            # Never handed to a delivery: left in `_taken`, the heartbeat would keep JetStream
            # from ever handing it out again.
            self._taken.pop(id(job), None)
            raise

    async def _heartbeat(self) -> None:
        """Tell JetStream that jobs being delivered are still someone's (a function may run
        for 15 minutes; `ack_wait` is what a dead dispatcher costs)."""
        while True:
            await asyncio.sleep(self.settings.ack_wait_seconds / 3)  # a period
            for taken in list(self._taken.values()):
                with contextlib.suppress(nats.errors.Error):
                    await taken.in_progress()
