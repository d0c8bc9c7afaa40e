"""A durable JetStream pull consumer kept asked: one pull request for `batch` messages always
waits at the server, so a message goes out the moment an acknowledgement frees a place under
the consumer's `max_ack_pending`, without a round trip to ask for it (a lane of lanes.py).

nats-py's `fetch` asks only when called, waits for each message with a task of its own and
`asyncio.wait_for`, and returns a batch only once it is complete or timed out; here messages are
handed on one by one as they arrive, from one subscription. The consumer's `max_ack_pending`
bounds what can arrive, so the queue of messages not yet handed on cannot grow past it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

__all__ = ["KeptPull"]

log = logging.getLogger(__name__)

# A request whose end (its last message, or the server's 408) was not heard this long after it
# expired is taken as lost with a connection, and asked again.
_LATE_SECONDS = 1.0
# After a refusal (no responders while a stream elects a leader, a bad request): ask again later.
_REFUSED_BACKOFF_SECONDS = 1.0


class KeptPull:
    """Pulls `consumer` of `stream` until `idle_limit` requests in a row brought nothing, or the
    server ended the consumer's requests (409: deleted, leadership changed, shutting down; the
    caller opens it again). Each message goes to `deliver`, in order, one at a time."""

    def __init__(
        self,
        nc: Client,
        *,
        stream: str,
        consumer: str,
        batch: int,
        expires: float,
        deliver: Callable[[Msg], Awaitable[None]],
    ) -> None:
        self._nc = nc
        self._subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"
        self._request = json.dumps({"batch": batch, "expires": int(expires * 1e9)}).encode()
        self._batch = batch
        self._expires = expires
        self._deliver = deliver
        self._over = asyncio.Event()
        self._got = 0
        self._refused = False
        self._ended: str | None = None
        # Messages received, not yet handed on. The subscription's callback only queues them: an
        # unsubscribe cancels the callback, so a message it was handing on would be taken from
        # the server yet never delivered nor acknowledged (and a blocked callback would hold back
        # the 408/409 that follow it).
        self._arrivals: asyncio.Queue[Msg | None] = asyncio.Queue()

    async def run(self, *, idle_limit: int) -> None:
        """Ask until the pull ends, then hand on every message already received before
        returning, so that each message taken from the server reaches `deliver`."""
        handing = asyncio.create_task(self._hand_on(), name=f"hand on {self._subject}")
        try:
            await self._ask(idle_limit=idle_limit)
        except asyncio.CancelledError:
            handing.cancel()  # closing down: unacknowledged, they come again after ack_wait
            raise
        except Exception:
            await self._finish(handing)
            raise
        await self._finish(handing)

    async def _finish(self, handing: asyncio.Task[None]) -> None:
        self._arrivals.put_nowait(None)  # the end, after the messages already queued
        await handing

    async def _hand_on(self) -> None:
        while (msg := await self._arrivals.get()) is not None:
            try:
                await self._deliver(msg)
            except Exception:  # one message's failure must not strand the ones after it
                log.exception("handing on a message from %s", self._subject)

    async def _ask(self, *, idle_limit: int) -> None:
        inbox = self._nc.new_inbox()
        subscription = await self._nc.subscribe(inbox, cb=self._received)
        idle = 0
        try:
            while idle < idle_limit and self._ended is None:
                self._got, self._refused = 0, False
                self._over.clear()
                try:
                    await self._nc.publish(self._subject, self._request, reply=inbox)
                except nats.errors.Error as exc:
                    log.warning("cannot ask %s for messages: %s", self._subject, exc)
                    self._refused = True
                else:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self._expires + _LATE_SECONDS):
                            await self._over.wait()
                idle = 0 if self._got else idle + 1
                if self._refused:
                    await asyncio.sleep(_REFUSED_BACKOFF_SECONDS)  # a backoff, not a wait
            if self._ended is not None:
                log.info("pulling %s ended: %s", self._subject, self._ended)
        finally:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()

    async def _received(self, msg: Msg) -> None:
        if not msg.reply:
            # A status, not a message (JetStream's messages carry their acknowledgement subject).
            self._status(msg)
            return
        self._got += 1
        if self._got >= self._batch:
            self._over.set()  # fulfilled: the next request goes out now
        self._arrivals.put_nowait(msg)

    def _status(self, msg: Msg) -> None:
        headers = msg.headers or {}
        status = headers.get("Status", "")
        if status == "100":
            return  # a heartbeat; none is asked for
        if status not in ("404", "408"):  # 404, 408: no messages, expired
            description = headers.get("Description", "")
            if status == "409":
                self._ended = f"409 {description}"
            else:
                log.warning("pulling %s: %s %s", self._subject, status, description)
                self._refused = True
        self._over.set()
