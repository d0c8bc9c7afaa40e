"""The dispatcher's side of `JetStreamStore` (jetstream.py): the jobs it takes from the stream.

Each subject with a backlog gets a lane, a durable pull consumer of its own whose
`max_ack_pending` caps the jobs of it the dispatchers hold, so one function's backlog cannot
starve the others; a lane keeps a pull request waiting at the server (pulls.py) instead of
asking after each acknowledgement, and closes when idle. A job due is handed to delivery one at
a time; a heartbeat keeps JetStream from handing out again the jobs being delivered, until the
store releases them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import nats.errors
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig

from kubelambda.clock import Clock
from kubelambda.delivery.codec import decode_job
from kubelambda.delivery.connection import BrokerConnection
from kubelambda.delivery.jobs import DeliveryJob
from kubelambda.delivery.pulls import KeptPull

__all__ = ["Lanes"]

log = logging.getLogger(__name__)

# A lane whose pull requests brought nothing this many times in a row (each waits `fetch_wait`)
# is closed; `follow` opens it again when its subject has a backlog.
_IDLE_REQUESTS = 10


class _Lane:
    """One subject's consumer; the consumer's `max_ack_pending` (`limit`) bounds the jobs of it
    that the dispatchers hold."""

    def __init__(self, subject: str, consumer: str, limit: int) -> None:
        self.subject = subject
        self.consumer = consumer
        self.limit = limit
        self.task: asyncio.Task[None] | None = None


class Lanes:
    """The lanes of one dispatcher's connection, the messages of the jobs it took (until
    `release`), and the one job due waiting for delivery to `take` it."""

    def __init__(self, connection: BrokerConnection, *, clock: Clock, fetch_wait: float) -> None:
        self.settings = connection.settings
        self._connection = connection
        self._clock = clock
        self._fetch_wait = fetch_wait
        self._taken: dict[int, Msg] = {}
        self._due: asyncio.Queue[DeliveryJob] = asyncio.Queue(maxsize=1)
        self._lanes: dict[str, _Lane] = {}
        self.backlog: dict[str, int] = {}  # subject → messages in the stream, last seen

    def __len__(self) -> int:
        return len(self._taken) + self._due.qsize()

    def tasks(self) -> list[asyncio.Task[None]]:
        """The lanes' pulls, to cancel at the end."""
        return [lane.task for lane in self._lanes.values() if lane.task]

    async def take(self) -> DeliveryJob:
        return await self._due.get()

    def release(self, job: DeliveryJob) -> Msg | None:
        """The message `job` came in, no longer kept in progress (None: not one taken here)."""
        return self._taken.pop(id(job), None)

    async def follow(self) -> None:
        """Start a lane for each subject with a backlog (and always the retries' and the
        URL deliveries'), every second."""
        await self._connection.ready.wait()
        settings = self.settings
        fixed = {
            settings.retries_subject: 10_000,
            settings.urls_subject: settings.function_concurrency,
        }
        while True:
            try:
                assert self._connection.js is not None
                info = await self._connection.js.stream_info(
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
        js, nc = self._connection.js, self._connection.nc
        assert js is not None and nc is not None
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
            await js.add_consumer(settings.stream, config)
        except (nats.errors.Error, TimeoutError) as exc:
            log.warning("cannot consume %s: %s", lane.subject, exc)
            return
        # Asked for as many as the consumer lets out unacknowledged: the server holds the rest
        # of the request until acknowledgements make room, and sends at once then.
        pull = KeptPull(
            nc,
            stream=settings.stream,
            consumer=lane.consumer,
            batch=lane.limit,
            expires=self._fetch_wait,
            deliver=self._arrived,
        )
        try:
            await pull.run(idle_limit=_IDLE_REQUESTS)
        except (nats.errors.Error, TimeoutError) as exc:
            log.warning("pulling %s: %s", lane.subject, exc)  # `follow` opens it again

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

    async def heartbeat(self) -> None:
        """Tell JetStream that jobs being delivered are still someone's (a function may run
        for 15 minutes; `ack_wait` is what a dead dispatcher costs)."""
        while True:
            await asyncio.sleep(self.settings.ack_wait_seconds / 3)  # a period
            for taken in list(self._taken.values()):
                with contextlib.suppress(nats.errors.Error):
                    await taken.in_progress()
