"""first_connection: a second attempt when the first has not connected in time, the first to
connect wins, the other's connection discarded; refusals raised; cancellation cancels both."""

from __future__ import annotations

import asyncio

import pytest

from kubelambda.connect import first_connection


class Attempts:
    """connect() hands out futures the test settles by hand, in the order they were made."""

    def __init__(self) -> None:
        self.made: list[asyncio.Future[str]] = []
        self.discarded: list[str] = []
        self._new = asyncio.Event()

    async def connect(self) -> str:
        attempt: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.made.append(attempt)
        self._new.set()
        return await attempt

    def first_connection(self, *, again_after: float) -> asyncio.Task[str]:
        return asyncio.create_task(
            first_connection(self.connect, discard=self.discarded.append, again_after=again_after)
        )

    async def started(self, count: int) -> None:
        """Return once ``count`` attempts were made (within 2 s)."""
        async with asyncio.timeout(2):
            while len(self.made) < count:
                self._new.clear()
                await self._new.wait()


def test_a_connection_made_at_once_takes_one_attempt() -> None:
    async def body() -> None:
        attempts = Attempts()
        call = attempts.first_connection(again_after=5)
        await attempts.started(1)
        attempts.made[0].set_result("first")
        assert await call == "first"
        assert len(attempts.made) == 1

    asyncio.run(body())


def test_a_lost_first_attempt_is_overtaken_and_its_late_connection_discarded() -> None:
    async def body() -> None:
        attempts = Attempts()
        call = attempts.first_connection(again_after=0.01)
        await attempts.started(2)
        attempts.made[1].set_result("second")
        assert await call == "second"
        await asyncio.sleep(0)
        assert attempts.made[0].cancelled()

    asyncio.run(body())


def test_both_connected_at_once_keeps_one_and_discards_the_other() -> None:
    async def body() -> None:
        attempts = Attempts()
        call = attempts.first_connection(again_after=0.01)
        await attempts.started(2)
        attempts.made[0].set_result("first")
        attempts.made[1].set_result("second")
        won = await call
        assert [won, *attempts.discarded] in (["first", "second"], ["second", "first"])

    asyncio.run(body())


def test_a_refusal_before_the_second_attempt_is_raised_at_once() -> None:
    async def body() -> None:
        attempts = Attempts()
        call = attempts.first_connection(again_after=5)
        await attempts.started(1)
        attempts.made[0].set_exception(ConnectionRefusedError("refused"))
        with pytest.raises(ConnectionRefusedError):
            await call
        assert len(attempts.made) == 1

    asyncio.run(body())


def test_one_failure_of_two_waits_for_the_other() -> None:
    async def body() -> None:
        attempts = Attempts()
        call = attempts.first_connection(again_after=0.01)
        await attempts.started(2)
        attempts.made[0].set_exception(ConnectionRefusedError("refused"))
        await asyncio.sleep(0.01)
        assert not call.done()
        attempts.made[1].set_result("second")
        assert await call == "second"

    asyncio.run(body())


def test_both_failing_raises_the_first_error() -> None:
    async def body() -> None:
        attempts = Attempts()
        call = attempts.first_connection(again_after=0.01)
        await attempts.started(2)
        attempts.made[0].set_exception(ConnectionRefusedError("first"))
        await asyncio.sleep(0.01)
        attempts.made[1].set_exception(OSError("second"))
        with pytest.raises(ConnectionRefusedError, match="first"):
            await call

    asyncio.run(body())


def test_cancelling_cancels_both_attempts() -> None:
    async def body() -> None:
        attempts = Attempts()
        call = attempts.first_connection(again_after=0.01)
        await attempts.started(2)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        await asyncio.sleep(0)
        assert all(attempt.cancelled() for attempt in attempts.made)

    asyncio.run(body())


def test_a_real_connection_on_loopback() -> None:
    async def body() -> None:
        accepted = asyncio.Event()
        server = await asyncio.start_server(lambda r, w: accepted.set(), host="127.0.0.1", port=0)
        port = server.sockets[0].getsockname()[1]
        _, writer = await first_connection(
            lambda: asyncio.open_connection("127.0.0.1", port), discard=lambda rw: rw[1].close()
        )
        async with asyncio.timeout(2):
            await accepted.wait()
        writer.close()
        server.close()
        await server.wait_closed()

    asyncio.run(body())
