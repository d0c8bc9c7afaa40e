"""Requests the gateway refuses, times out or loses leave no reference cycles: what they held is
freed by reference counting as each ends, not kept until a full collection (which, after a burst
of thousands, had raised the peak and so the allocator's high-water mark: issue 17). On uvloop,
as `kubelambda gateway` and `kubelambda local` run it (asyncio's own selector transport holds a
cycle of its own)."""

from __future__ import annotations

import asyncio
import collections
import gc
import logging
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from integration.gateway.conftest import GatewayThread
from integration.gateway.test_burst import UvloopGatewayThread
from kubelambda.api.identity import FunctionKey
from kubelambda.gateway.platform import Instance
from kubelambda.gateway.routing import FunctionEntry, HttpRoute
from kubelambda.gateway.settings import GatewaySettings
from support.waiting import wait_for

COLD = FunctionKey("default", "cold")  # no instance: held, then 504 (or 503, the queue full)
SLOW = FunctionKey("default", "slow")  # a stand-in that sleeps as the event asks
DEAD = FunctionKey("default", "dead")  # an instance on a port nobody listens on

REQUESTS = 30
CLIENT = Path(__file__).with_name("cycles_client.py")
# Before the fix each of these requests left 16 to 55 objects in cycles: under one per request
# allows for the odd object of the loop's own, not for any kind of request's.
BOUND = REQUESTS


@dataclass(frozen=True)
class Case:
    path: str
    body: bytes
    leaves: bool  # the client closes its connection right after sending
    answers: frozenset[bytes]  # status codes the gateway may answer (none if the client left)


CASES = {
    "held-past-its-deadline-or-refused-the-hold-queue-full": Case(
        "/cold", b"", False, frozenset({b"504", b"503"})
    ),
    "left-while-held": Case("/cold", b"", True, frozenset()),
    "left-while-invoked": Case("/slow", b'{"sleep": 2}', True, frozenset()),
    "instance-not-answering-in-time": Case("/slow", b'{"sleep": 3}', False, frozenset({b"504"})),
    "instance-refusing-connections": Case("/dead", b"", False, frozenset({b"502", b"503", b"504"})),
    "served": Case("/slow", b"{}", False, frozenset({b"200"})),
}


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def gateway() -> Iterator[GatewayThread]:
    # The gateway's warnings name each failure, its exception an argument: pytest keeps every
    # record (to show it), and so each request's objects, which would hide their cycles.
    quiet = logging.getLogger("kubelambda.gateway")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    running = UvloopGatewayThread()
    running.start(
        functions=[
            FunctionEntry(COLD, timeout_seconds=1),
            FunctionEntry(SLOW, timeout_seconds=0.3),
            FunctionEntry(DEAD, timeout_seconds=1),
        ],
        routes=[HttpRoute(COLD, "/cold"), HttpRoute(SLOW, "/slow"), HttpRoute(DEAD, "/dead")],
        settings=GatewaySettings(
            invoke_auth=False,
            hold_timeout_seconds=0.3,
            max_queued_per_function=REQUESTS // 2,
            upstream_grace_seconds=0.2,
        ),
    )
    # Room for every case's requests at once: those a client left still sleep in the stand-in.
    standin = running.standin(concurrency=4 * REQUESTS, record=False)
    running.set_instances(SLOW, [standin.instance()])
    running.set_instances(DEAD, [Instance("dead", "127.0.0.1", _closed_port(), REQUESTS)])
    try:
        yield running
    finally:
        running.stop()
        quiet.setLevel(level)


def _send_all(host: str, port: int, case: Case) -> list[bytes]:
    """Each answer to REQUESTS requests of `case` sent at once, by clients in a process of their
    own (cycles_client.py: what its threads leave is not the gateway's)."""
    sent = subprocess.run(
        [
            sys.executable,
            str(CLIENT),
            host,
            str(port),
            case.path,
            case.body.hex(),
            "1" if case.leaves else "0",
            str(REQUESTS),
        ],
        capture_output=True,
        timeout=60,
        check=True,
    )
    return [bytes.fromhex(line) for line in sent.stdout.decode().splitlines()]


def _tasks(gateway: GatewayThread) -> int:
    """Tasks on the gateway's loop: its servers', the stand-in's and those of requests."""

    async def count() -> int:
        return len(asyncio.all_tasks())

    tasks: int = gateway.run(count())
    return tasks


def _settle(gateway: GatewayThread) -> None:
    """Let the gateway's loop run on time for a while. The test's full collections run in the
    gateway's process and stop its thread (over a second each in a big test process); two
    back to back read to its LoopLag (the least lateness of its last two 50 ms ticks) as a
    loop lastingly late, and the next requests were refused 503 as overload (two CI runs)."""
    gateway.run(asyncio.sleep(0.25))


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_requests_ending_in_refusal_timeout_or_disconnection_leave_no_cycles(
    gateway: GatewayThread, case: Case
) -> None:
    addresses = gateway.addresses
    assert addresses is not None
    # Garbage of earlier cases out of the way; then the tasks when no request is running.
    gc.collect()
    idle = _tasks(gateway)
    _settle(gateway)
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)  # what a collection finds is kept, to be named below
    try:
        answers = _send_all(addresses.public_host, addresses.public_port, case)
        # Every request's task, and those it started (watching its client, invoking), ended.
        wait_for(lambda: _tasks(gateway) <= idle, timeout=10, what="every request to end")
        found = gc.collect()
        kinds = collections.Counter(type(thing).__qualname__ for thing in gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    statuses = {answer.split(b" ", 1)[0] for answer in answers}
    assert statuses <= (case.answers or {b""}), collections.Counter(answers).most_common()
    assert found < BOUND, (
        f"{REQUESTS} requests left {found} objects in reference cycles, freed only by a full "
        f"collection: {kinds.most_common(12)}"
    )
