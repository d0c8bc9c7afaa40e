"""overload.py's accept waits: how long a connection waited in the accept queue (the kernel
says), and AcceptWaits, which refuses connections for that wait only while every connection
accepted for an interval waited over the target: a standing queue, not a burst or a pause."""

from __future__ import annotations

import contextlib
import socket
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from kubelambda.gateway.overload import AcceptWaits, accept_wait_ms

linux_only = pytest.mark.skipif(
    sys.platform != "linux", reason="TCP_INFO's tcpi_last_data_recv is Linux's"
)

TARGET = 20  # ms
INTERVAL = 0.1  # s


class _Accepted:
    """An accepted socket as a transport shows it (get_extra_info)."""

    def __init__(self, sock: socket.socket | None) -> None:
        self.sock = sock

    def get_extra_info(self, name: str) -> Any:
        return self.sock if name == "socket" else None


@contextlib.contextmanager
def _listener() -> Iterator[socket.socket]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener


def _accepted_after(listener: socket.socket, seconds: float, *, sends: bool) -> int:
    """The wait the kernel reports for a connection accepted `seconds` after it was made."""
    with socket.create_connection(listener.getsockname(), timeout=5) as client:
        if sends:
            client.sendall(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        time.sleep(seconds)
        accepted, _ = listener.accept()
        with accepted:
            return accept_wait_ms(_Accepted(accepted))


@linux_only
@pytest.mark.parametrize("sends", [True, False], ids=["request-sent", "nothing-sent"])
def test_the_kernel_says_how_long_a_connection_waited_to_be_accepted(sends: bool) -> None:
    with _listener() as listener:
        late = _accepted_after(listener, 0.15, sends=sends)
        prompt = _accepted_after(listener, 0.0, sends=sends)
    assert 140 <= late < 1000, late  # the kernel's tick is at most 10 ms
    assert prompt < 15, prompt


def test_a_transport_without_a_socket_reads_as_not_waiting() -> None:
    assert accept_wait_ms(_Accepted(None)) == 0


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _waits() -> tuple[AcceptWaits, _Clock]:
    clock = _Clock()
    return AcceptWaits(TARGET, interval=INTERVAL, clock=clock), clock


def _accept(waits: AcceptWaits, clock: _Clock, waited: list[int], every: float) -> list[bool]:
    """Whether each of the connections is refused, accepted `every` seconds apart."""
    refused = []
    for ms in waited:
        refused.append(waits.refuse(ms))
        clock.now += every
    return refused


def test_connections_that_waited_within_the_target_are_never_refused() -> None:
    waits, clock = _waits()
    assert not any(_accept(waits, clock, [TARGET] * 500, every=0.001))


def test_a_burst_taken_at_once_after_a_pause_is_not_refused() -> None:
    # A pause of the process (a full collection, a CPU quota): every connection made during it
    # waited long, and the loop then takes them all within the interval.
    waits, clock = _waits()
    assert not any(_accept(waits, clock, [400] * 300, every=0.0003))
    # ...and those after it waited little: served, and the next pause starts afresh.
    assert not any(_accept(waits, clock, [1] * 10, every=0.001))
    assert not any(_accept(waits, clock, [300] * 100, every=0.0005))


def test_a_standing_queue_is_refused_once_it_lasted_an_interval_then_no_longer() -> None:
    waits, clock = _waits()
    # Every connection waited over the target for a whole interval: the gateway runs behind.
    first = _accept(waits, clock, [60] * 100, every=0.002)
    assert not any(first[:50]) and all(first[51:]), first
    # Behind still: each one over the target is refused, each one within it served.
    assert _accept(waits, clock, [60, 10, 60, 15, 60], every=0.002) == [
        True,
        False,
        True,
        False,
        True,
    ]
    # Within the target for a whole interval: caught up, and refusing stops.
    assert not any(_accept(waits, clock, [5] * 60, every=0.002))
    assert not waits.refuse(60)


def test_a_lull_between_connections_does_not_make_two_late_ones_a_standing_queue() -> None:
    waits, clock = _waits()
    assert not waits.refuse(60)
    clock.now += 10 * INTERVAL  # no connection for a while
    assert not waits.refuse(60)
    # Refusing, then a lull: the next late one starts afresh too.
    _accept(waits, clock, [60] * 100, every=0.002)
    assert waits.refuse(60)
    clock.now += 10 * INTERVAL
    assert not waits.refuse(60)


def test_a_queue_standing_with_one_connection_at_a_time_is_refused_too() -> None:
    # Each arrives as the one before is taken and waits 300 ms: no lull between them, only a
    # gateway too late to take any connection in time.
    waits, clock = _waits()
    assert _accept(waits, clock, [300] * 4, every=0.3) == [False, True, True, True]
