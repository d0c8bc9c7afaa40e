"""KeptPull against a fake connection whose subscription behaves as nats-py's does: the callback
runs in a task of its own, and unsubscribing cancels it with whatever it was doing."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, cast

import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from kubelambda.delivery.pulls import KeptPull

pytestmark = pytest.mark.anyio


def _message(data: bytes) -> Msg:
    return Msg(_client=cast(Any, None), subject="_INBOX.pull", reply="$JS.ACK.x", data=data)


def _status(code: str, description: str) -> Msg:
    headers = {"Status": code, "Description": description}
    return Msg(_client=cast(Any, None), subject="_INBOX.pull", headers=headers)


class _Subscription:
    def __init__(self, cb: Callable[[Msg], Awaitable[None]], unsubscribed: asyncio.Event) -> None:
        self.queue: asyncio.Queue[Msg] = asyncio.Queue()
        self.unsubscribed = unsubscribed
        self._task = asyncio.create_task(self._run(cb))

    async def _run(self, cb: Callable[[Msg], Awaitable[None]]) -> None:
        while True:
            await cb(await self.queue.get())

    async def unsubscribe(self) -> None:
        # As nats-py: the message in the callback and the ones queued behind it are dropped.
        self._task.cancel()
        self.unsubscribed.set()


class _Connection:
    """Answers the first pull request with `answer`, and no later one."""

    def __init__(self, answer: list[Msg]) -> None:
        self.answer = answer
        self.subscription: _Subscription | None = None
        self.unsubscribed = asyncio.Event()
        self.requests = 0

    def new_inbox(self) -> str:
        return "_INBOX.pull"

    async def subscribe(self, subject: str, cb: Callable[[Msg], Awaitable[None]]) -> _Subscription:
        self.subscription = _Subscription(cb, self.unsubscribed)
        return self.subscription

    async def publish(self, subject: str, payload: bytes, reply: str) -> None:
        self.requests += 1
        if self.requests == 1:
            assert self.subscription is not None
            for msg in self.answer:
                self.subscription.queue.put_nowait(msg)


async def test_messages_received_before_a_409_are_all_handed_on_though_delivery_is_busy() -> None:
    # The broker restarting answers the waiting request "409 Server Shutdown" just after it
    # sent two messages, while the dispatcher has no room for the first one yet.
    connection = _Connection([_message(b"1"), _message(b"2"), _status("409", "Server Shutdown")])
    room = asyncio.Event()
    handed: list[bytes] = []

    async def deliver(msg: Msg) -> None:
        handed.append(msg.data)
        await room.wait()

    pull = KeptPull(
        cast(Client, connection),
        stream="S",
        consumer="C",
        batch=10,
        expires=0.2,
        deliver=deliver,
    )
    running = asyncio.create_task(pull.run(idle_limit=3))
    try:
        # The 409 ends the asking at once, though a delivery is waiting for room.
        async with asyncio.timeout(5):
            await connection.unsubscribed.wait()
        assert not running.done(), "the pull returned with a message not handed on"
        room.set()
        async with asyncio.timeout(5):
            await running
    finally:
        running.cancel()
    assert handed == [b"1", b"2"]
    assert connection.requests == 1
