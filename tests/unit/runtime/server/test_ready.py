"""The readiness signal (server/ready.py): the runtime's health, written once it is known."""

from __future__ import annotations

import asyncio
import os

import pytest

from kubelambda_runtime.server.ready import announce

pytestmark = pytest.mark.anyio


def read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1024):
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks)


@pytest.mark.parametrize("outcome", ["ready", "init_failed"])
async def test_the_health_is_written_when_the_init_under_way_ends(outcome):
    read, write = os.pipe()
    boot: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    status = ["initializing"]
    announcing = asyncio.ensure_future(
        announce(write, health=lambda: status[0], boots=lambda: [boot])
    )
    await asyncio.sleep(0.05)
    assert not announcing.done()  # nothing said while the init runs
    status[0] = outcome
    boot.set_result(None)
    async with asyncio.timeout(5):
        assert await announcing == outcome
    assert read_all(read) == f"{outcome}\n".encode()  # and the descriptor is closed


async def test_a_health_known_already_is_written_at_once():
    read, write = os.pipe()
    async with asyncio.timeout(5):
        assert await announce(write, health=lambda: "ready", boots=list) == "ready"
    assert read_all(read) == b"ready\n"


async def test_between_inits_it_looks_again_until_the_health_is_known():
    read, write = os.pipe()
    looks = []

    def health() -> str:
        looks.append(1)
        return "ready" if len(looks) > 3 else "initializing"

    async with asyncio.timeout(5):
        assert await announce(write, health=health, boots=list) == "ready"
    assert read_all(read) == b"ready\n"


async def test_a_reader_that_is_gone_is_no_error():
    read, write = os.pipe()
    os.close(read)
    async with asyncio.timeout(5):
        assert await announce(write, health=lambda: "ready", boots=list) == "ready"
    with pytest.raises(OSError, match="Bad file descriptor"):
        os.fstat(write)  # closed all the same
