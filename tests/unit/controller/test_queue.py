"""queue.WorkQueue: each key queued once, never handled twice at once, retried with backoff."""

from __future__ import annotations

import asyncio

from kubelambda.controller.queue import WorkQueue


def test_a_key_is_queued_once() -> None:
    async def scenario() -> list[str]:
        queue: WorkQueue[str] = WorkQueue()
        for key in ("a", "b", "a", "a"):
            queue.add(key)
        got = [await queue.get(), await queue.get()]
        assert len(queue) == 0
        return got

    assert asyncio.run(scenario()) == ["a", "b"]


def test_a_key_added_while_handled_comes_back_after_done() -> None:
    async def scenario() -> None:
        queue: WorkQueue[str] = WorkQueue()
        queue.add("a")
        key = await queue.get()
        queue.add("a")  # an event arrives while "a" is being reconciled
        assert len(queue) == 0, "must not be handed to a second worker meanwhile"
        assert queue.busy()
        queue.done(key)
        assert len(queue) == 1
        assert await queue.get() == "a"
        queue.done("a")
        assert not queue.busy()

    asyncio.run(scenario())


def test_get_waits_for_a_key() -> None:
    async def scenario() -> str:
        queue: WorkQueue[str] = WorkQueue()
        waiter = asyncio.create_task(queue.get())
        await asyncio.sleep(0)
        assert not waiter.done()
        queue.add("x")
        return await asyncio.wait_for(waiter, timeout=1)

    assert asyncio.run(scenario()) == "x"


def test_retries_back_off_exponentially_until_forgotten() -> None:
    async def scenario() -> None:
        queue: WorkQueue[str] = WorkQueue(base_delay=0.01, max_delay=0.04)
        assert [queue.retry("a") for _ in range(4)] == [0.01, 0.02, 0.04, 0.04]
        queue.forget("a")
        assert queue.retry("a") == 0.01
        assert await asyncio.wait_for(queue.get(), timeout=1) == "a"
        queue.close()

    asyncio.run(scenario())


def test_an_earlier_delayed_add_wins() -> None:
    async def scenario() -> None:
        queue: WorkQueue[str] = WorkQueue()
        queue.add_after("a", 30)
        queue.add_after("a", 0.01)
        assert await asyncio.wait_for(queue.get(), timeout=1) == "a"
        queue.done("a")
        queue.close()  # the 30 s timer was replaced, not left to fire
        assert len(queue) == 0

    asyncio.run(scenario())
