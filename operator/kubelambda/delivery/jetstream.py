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

Per event this is on the hot path of local mode's one process. The connection, the stream and
the writes are connection.py's (publishes wait for their acknowledgement on one reply
subscription, publisher.py); the consumers and the jobs taken, lanes.py's (a lane keeps a pull
request waiting at the server instead of asking after each acknowledgement, pulls.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from kubelambda.api.identity import FunctionKey
from kubelambda.clock import Clock
from kubelambda.delivery.broker import BrokerSettings
from kubelambda.delivery.codec import decode_job
from kubelambda.delivery.connection import BrokerConnection, BrokerUnavailable
from kubelambda.delivery.jobs import DeliveryJob
from kubelambda.delivery.lanes import Lanes

__all__ = ["Backlog", "JetStreamStore"]


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
        self._connection = BrokerConnection(settings)
        self._lanes = Lanes(self._connection, clock=clock, fetch_wait=fetch_wait)
        self._tasks: list[asyncio.Task[None]] = []

    # --- connecting ----------------------------------------------------------------------

    def start(self) -> None:
        """Connect (in the background, retrying while the broker is down) and, for a
        dispatcher (`consume`), follow the subjects with a backlog."""
        if self._tasks:
            return
        connect = self._connection.connect()
        self._tasks.append(asyncio.create_task(connect, name="jetstream-connect"))
        if self._consume:
            self._tasks.append(asyncio.create_task(self._lanes.follow(), name="jetstream-follow"))
            self._tasks.append(asyncio.create_task(self._lanes.heartbeat(), name="jetstream-beat"))

    async def aclose(self) -> None:
        tasks = [*self._tasks, *self._lanes.tasks()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._connection.aclose()

    async def wait_ready(self) -> None:
        await self._connection.ready.wait()

    # --- the gateway's side ----------------------------------------------------------------

    async def admit(self, jobs: Sequence[DeliveryJob]) -> bool:
        connection = self._connection
        if not connection.connected:
            raise BrokerUnavailable(f"the broker at {self.settings.url} is not connected")
        wall = self._clock.wall()
        for job in jobs:
            subject = self._subject(job)
            if not await connection.publish_job(subject, job, msg_id=job.id, due=wall):
                return False
        return True

    def _subject(self, job: DeliveryJob) -> str:
        if job.function is not None:
            return self.settings.events_subject(job.function)
        return self.settings.urls_subject

    async def publish_record(
        self, subject: str, data: bytes, msg_id: str, *, trace: str | None = None
    ) -> None:
        """Publish an invocation record to a destination subject (BrokerConnection's)."""
        await self._connection.publish_record(subject, data, msg_id, trace=trace)

    # --- the dispatcher's side -------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._lanes)

    async def take(self) -> DeliveryJob:
        return await self._lanes.take()

    async def done(self, job: DeliveryJob) -> None:
        taken = self._lanes.release(job)
        if taken is None:
            return
        with contextlib.suppress(nats.errors.Error):
            await taken.ack()

    async def retry(self, job: DeliveryJob, *, due: float) -> None:
        taken = self._lanes.release(job)
        if taken is None:
            return
        due_wall = self._clock.wall() + max(0.0, due - self._clock.monotonic())
        try:
            stored = await self._connection.publish_job(
                self.settings.retries_subject, job, msg_id=_replacing(job, taken), due=due_wall
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
        js = self._connection.js
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
