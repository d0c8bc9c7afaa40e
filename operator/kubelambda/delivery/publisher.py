"""Publishes to JetStream that return once the stream acknowledged the write, for the gateway's
202 and the dispatcher's write-backs (`BrokerConnection`, connection.py).

nats-py's `JetStreamContext.publish` makes a reply subject from fresh random bytes, waits with
`asyncio.wait_for` and builds a `PubAck` dataclass for every message: about a third of what
accepting an Event invocation costs. Here one wildcard subscription takes every answer,
matched by a counter, and an answer is read as JSON only when it reports an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import Mapping

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

__all__ = ["Publisher"]

_ERROR = b'"error"'


def _time_out(answer: asyncio.Future[Msg], subject: str) -> None:
    if not answer.done():
        answer.set_exception(TimeoutError(f"JetStream did not acknowledge a message on {subject}"))


class Publisher:
    """JetStream publishes over one connection; `open` it once the connection is up (nats-py
    subscribes it again after a reconnect)."""

    def __init__(self, nc: Client, prefix: str, subscription: Subscription | None = None) -> None:
        self._nc = nc
        self._prefix = prefix
        self._skip = len(prefix)
        self._waiting: dict[str, asyncio.Future[Msg]] = {}
        self._tokens = itertools.count()
        self._subscription = subscription

    @classmethod
    async def open(cls, nc: Client) -> Publisher:
        publisher = cls(nc, nc.new_inbox() + ".")
        publisher._subscription = await nc.subscribe(publisher._prefix + "*", cb=publisher._answer)
        return publisher

    async def _answer(self, msg: Msg) -> None:
        waiter = self._waiting.pop(msg.subject[self._skip :], None)
        if waiter is not None and not waiter.done():
            waiter.set_result(msg)

    async def publish(
        self,
        subject: str,
        data: bytes,
        *,
        msg_id: str,
        ack_seconds: float,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Store `data` on `subject` with the message id `msg_id` (the stream's duplicate window
        keeps a second one out) and any other `headers`; return once the stream acknowledged it
        (a duplicate too), which it must within `ack_seconds`. Raises nats.js.errors.APIError as
        the stream refused it (err_code says why), nats.errors.Error when no stream answers or
        the connection fails, TimeoutError."""
        token = str(next(self._tokens))
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Msg] = loop.create_future()
        self._waiting[token] = answer
        # A timer handle rather than asyncio.timeout, which costs about three times as much.
        timer = loop.call_later(ack_seconds, _time_out, answer, subject)
        try:
            await self._nc.publish(
                subject,
                data,
                reply=self._prefix + token,
                headers={**headers, "Nats-Msg-Id": msg_id} if headers else {"Nats-Msg-Id": msg_id},
            )
            msg = await answer
        finally:
            timer.cancel()
            self._waiting.pop(token, None)
        reply = msg.data
        if not reply:
            # A status instead of an acknowledgement: 503, no stream takes the subject.
            raise nats.js.errors.NoStreamResponseError
        if _ERROR in reply:
            error = json.loads(reply).get("error")
            if isinstance(error, dict):
                nats.js.errors.APIError.from_error(error)

    async def aclose(self) -> None:
        for waiter in self._waiting.values():
            if not waiter.done():
                waiter.set_exception(nats.errors.ConnectionClosedError())
        self._waiting.clear()
        if self._subscription is not None:
            with contextlib.suppress(nats.errors.Error):  # the connection is closing anyway
                await self._subscription.unsubscribe()
