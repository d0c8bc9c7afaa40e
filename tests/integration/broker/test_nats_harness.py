"""The harness's nats-server with the real client (nats-py): a file-backed JetStream stream
deduplicates by Nats-Msg-Id, and keeps its messages and its durable consumer across a graceful
restart and a kill -9 on the same port and store; a server that cannot start fails with its log."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import nats
import pytest
from nats.js import JetStreamContext
from nats.js.api import StorageType

from harness.builds import PartUnavailable
from harness.nats import NatsFactory, NatsServer, nats_binary
from harness.procs import ServerFailed

pytestmark = pytest.mark.anyio

STREAM = "HARNESS"
SUBJECT = "harness.jobs"
DURABLE = "worker"


@asynccontextmanager
async def jetstream(server: NatsServer) -> AsyncIterator[JetStreamContext]:
    # No reconnects: each phase of a test gets a fresh connection, so what it reads came from
    # the restarted server's store, not from a client that rode through the restart.
    client = await nats.connect(server.url, connect_timeout=2, allow_reconnect=False)
    try:
        yield client.jetstream(timeout=5)
    finally:
        await client.close()


async def test_stream_deduplicates_and_survives_restart_and_kill(nats_factory: NatsFactory) -> None:
    server = nats_factory()
    url, store = server.url, server.store_dir

    async with jetstream(server) as js:
        await js.add_stream(name=STREAM, subjects=[SUBJECT], storage=StorageType.FILE)
        first = await js.publish(SUBJECT, b"first", headers={"Nats-Msg-Id": "job-1"})
        again = await js.publish(SUBJECT, b"first", headers={"Nats-Msg-Id": "job-1"})
        assert not first.duplicate
        assert again.duplicate is True
        assert again.seq == first.seq
        assert (await js.stream_info(STREAM)).state.messages == 1

    await anyio.to_thread.run_sync(server.restart)  # SIGTERM, then the same port and store
    assert (server.url, server.store_dir) == (url, store)

    async with jetstream(server) as js:
        info = await js.stream_info(STREAM)
        assert info.state.messages == 1
        assert info.config.storage == StorageType.FILE
        # The duplicate window is rebuilt from the stored messages: a retry is still caught.
        assert (await js.publish(SUBJECT, b"first", headers={"Nats-Msg-Id": "job-1"})).duplicate
        sub = await js.pull_subscribe(SUBJECT, durable=DURABLE, stream=STREAM)
        (message,) = await sub.fetch(1, timeout=5)
        assert message.data == b"first"
        assert message.headers == {"Nats-Msg-Id": "job-1"}
        await message.ack_sync()
        second = await js.publish(SUBJECT, b"second", headers={"Nats-Msg-Id": "job-2"})
        assert (second.seq, second.duplicate) == (first.seq + 1, None)

    await anyio.to_thread.run_sync(server.kill)
    assert server.process is not None
    assert server.process.popen.returncode == -signal.SIGKILL
    await anyio.to_thread.run_sync(server.restart)

    async with jetstream(server) as js:
        assert (await js.stream_info(STREAM)).state.messages == 2
        assert (await js.get_msg(STREAM, seq=second.seq)).data == b"second"
        # The durable consumer survived the crash too. An ack is flushed to disk a moment after
        # it is confirmed, so a crash may forget it and hand `first` out again (at least once);
        # the unacknowledged `second` must come either way.
        sub = await js.pull_subscribe(SUBJECT, durable=DURABLE, stream=STREAM)
        delivered: list[bytes] = []
        while b"second" not in delivered and len(delivered) < 2:
            (message,) = await sub.fetch(1, timeout=5)
            delivered.append(message.data)
            await message.ack_sync()
        assert delivered in ([b"second"], [b"first", b"second"])


async def test_the_session_server_serves_jetstream(nats_server: NatsServer) -> None:
    async with jetstream(nats_server) as js:
        await js.add_stream(name="SESSION_SMOKE", subjects=["session.smoke"])
        try:
            ack = await js.publish("session.smoke", b"hello")
            assert (await js.get_msg("SESSION_SMOKE", seq=ack.seq)).data == b"hello"
        finally:
            await js.delete_stream("SESSION_SMOKE")  # the server is shared: leave it as found


def test_a_server_that_cannot_start_fails_naming_its_log(
    nats_factory: NatsFactory, tmp_path: Path
) -> None:
    running = nats_factory()
    intruder = NatsServer(
        binary=nats_binary(),
        port=running.port,  # taken: the intruder cannot listen and exits
        store_dir=tmp_path / "intruder-store",
        name="intruder",
        log=tmp_path / "intruder.log",
    )
    with pytest.raises(ServerFailed) as failed:
        intruder.start()
    assert "address already in use" in str(failed.value)
    assert str(tmp_path / "intruder.log") in str(failed.value)
    assert not intruder.alive()
    assert running.alive()


def test_a_missing_binary_says_how_to_build_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBELAMBDA_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("KUBELAMBDA_NO_BUILD", "1")
    with pytest.raises(PartUnavailable, match=r"run `scripts/build-parts nats-server`"):
        nats_binary()
