"""How late the gateway's event loop runs, and when the gateway takes no new requests: each
connection (connection.py) asks `Overload` as it is accepted and at every request's head, and
answers 503 at once while it says so; the activator (activation.py) asks its own LoopLag before
holding a request.

The rules, in the order a request meets them: a connection beyond the server's connection limit is
refused when it opens; a connection accepted, or a request whose head arrives, while the loop runs
over `max_loop_lag_seconds` late lastingly, while over `max_accept_queue` connections wait in the
listening socket's accept queue (when the server was given its listener; over
`shedding_accept_queue` while it sheds a lasting overflow), or (a request) while the server has as
many requests parsed and not yet answered as its limit, is refused before it is read or routed
(connection.py); a request for a function whose busy instances would take too long to reach it is
refused by the activator.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from collections import deque
from collections.abc import Callable

__all__ = ["AcceptQueue", "LoopLag", "Overload"]


class LoopLag:
    """How late the running event loop runs, lastingly: every request waits about that long for
    its turn, whatever its function does. A timer is set every `interval` seconds; the lag is
    the least lateness of the last `ticks` timers, so a single stall (a pause of the process, a
    slow callback) reads as on time and only a standing backlog reads as late.
    """

    def __init__(self, *, interval: float = 0.05, ticks: int = 2) -> None:
        self._interval = interval
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._due = 0.0
        self._recent: deque[float] = deque([0.0] * ticks, maxlen=ticks)
        self._lag = 0.0  # min(_recent), kept as it changes rather than taken at every call

    def __call__(self) -> float:
        # Asked at every request's head and again before its lease: the loop it measures is
        # kept while it runs, since asyncio.get_running_loop makes a system call (getpid,
        # before Python 3.12). One not running any more means a new loop (tests).
        loop = self._loop
        if loop is None or not loop.is_running():
            loop = asyncio.get_running_loop()
            if loop is not self._loop:  # first use, or a new loop
                self.close()
                self._loop = loop
                self._recent.extend([0.0] * len(self._recent))
                self._lag = 0.0
                self._arm(loop)
        return self._lag

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        self._due = loop.time() + self._interval
        self._timer = loop.call_at(self._due, self._tick, loop)

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        self._recent.append(loop.time() - self._due)
        self._lag = min(self._recent)
        self._arm(loop)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class AcceptQueue:
    """How many connections wait in a listening socket's accept queue: taken by the kernel, not
    yet by the gateway, their clients silent. Linux reports it in a listener's TCP_INFO
    (`tcpi_unacked`); elsewhere it reads 0. Read again at most every `interval` seconds, so a
    request's head costs a clock read, not a system call; a millisecond, because uvloop takes a
    waiting connection at every turn of its loop and asks as it takes each (connection.py): a
    reading 10 ms old would still count the hundreds taken since.
    """

    _UNACKED = 24  # offset of tcpi_unacked in struct tcp_info: 8 one-byte fields, 4 u32s

    def __init__(
        self,
        listener: socket.socket,
        *,
        interval: float = 0.001,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._listener = listener
        self._interval = interval
        self._clock = clock
        self._read_at = -interval
        self._waiting = 0

    def __call__(self) -> int:
        now = self._clock()
        if now - self._read_at >= self._interval:
            self._read_at = now
            self._waiting = self._read()
        return self._waiting

    def refuse_beyond(self, bound: int, answer: bytes) -> int:
        """Take the connections waiting beyond `bound` from the listener, write each `answer`
        and close it; how many. uvloop takes one waiting connection at every turn of its loop and
        makes a transport and a protocol for it: a flood it refused itself cost a turn and those
        objects per client, where this is an accept, a send and a close, all in one turn."""
        self._read_at = self._clock()
        self._waiting = waiting = self._read()
        refused = 0
        while waiting - refused > bound:
            try:
                client, _ = self._listener.accept()
            except OSError:  # none left after all, or no descriptor for one
                break
            # An error sending: the client left, and there is nothing to answer.
            with client, contextlib.suppress(OSError):
                client.send(answer)
            refused += 1
        self._waiting = waiting - refused
        return refused

    def _read(self) -> int:
        option = getattr(socket, "TCP_INFO", None)
        if option is None:
            return 0
        try:
            info = self._listener.getsockopt(socket.IPPROTO_TCP, option, self._UNACKED + 4)
        except OSError:  # closed, or not TCP
            return 0
        return int(struct.unpack_from("I", info, self._UNACKED)[0])


class Overload:
    """Whether one server takes new requests now: not while its event loop runs over
    `max_loop_lag_seconds` late lastingly (`loop_lag`, a LoopLag unless injected), nor while
    too many connections wait to be accepted (`accept_queue`, if given). Called at every
    request's head and as each connection is accepted, so it only reads what LoopLag and
    AcceptQueue measured (and, while shedding, the clock).

    A loop that late has a backlog of requests it has not even read yet (in the kernel's accept
    queue and in connections' buffers); answering the ones it reads 503 from bytes built once,
    without routing them, lets it reach the rest sooner, which it then answers the same way.

    The accept queue is the wait a loop on time does not show: a gateway at its capacity keeps
    its timers but takes connections no faster than it answers them, and a backlog of thousands
    holds seconds of them; once full, the kernel drops clients' SYNs (retried after 1 s, 3 s,
    7 s...). Refusing beyond `max_accept_queue` (512), as they are accepted (connection.py),
    keeps that wait bounded and the cliff away: benchmarks/burst.py's overflow had 7,350
    handshakes dropped and 8,598 requests unanswered when they were refused only once their
    heads were read.

    Bounded, not short: against a lasting overflow the queue stays at that bound, and each
    client waits behind 512 others for its 503 (burst.py: 200 to 300 ms). So once the queue,
    over the bound, came back within it and went over it again within `shedding_seconds` (1 s),
    the server sheds: it refuses while over `shedding_accept_queue` (16) wait, a wait of
    milliseconds, until the queue has stayed within that for `shedding_seconds`. One flood,
    such as the backlog a stall of the loop leaves, only shrinks as it is taken: those beyond
    512 are refused, as before, and the rest served.
    """

    def __init__(
        self,
        *,
        max_loop_lag_seconds: float = 1.0,
        loop_lag: Callable[[], float] | None = None,
        max_accept_queue: int = 512,
        accept_queue: Callable[[], int] | None = None,
        shedding_accept_queue: int = 16,
        shedding_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_loop_lag_seconds = max_loop_lag_seconds
        self.max_accept_queue = max_accept_queue
        self.shedding_accept_queue = shedding_accept_queue
        self.shedding_seconds = shedding_seconds
        self._monitor: LoopLag | None = None
        if loop_lag is None:
            loop_lag = self._monitor = LoopLag()
        self._loop_lag = loop_lag
        self._accept_queue = accept_queue
        self._clock = clock
        # The accept queue's bound now: shedding_accept_queue while shedding.
        self._bound = max_accept_queue
        self._over_at: float | None = None  # the last reading over max_accept_queue, if lately
        self._back_within = False  # a reading within it came since
        self._shedding_until = 0.0

    @property
    def accept_bound(self) -> int:
        """The connections it lets wait in the accept queue now: `max_accept_queue`, or
        `shedding_accept_queue` while shedding."""
        return self._bound

    @property
    def shedding(self) -> bool:
        """Whether it refuses beyond `shedding_accept_queue` now (a lasting overflow)."""
        return self._bound != self.max_accept_queue

    def __call__(self) -> bool:
        if self._loop_lag() > self.max_loop_lag_seconds:
            return True
        queue = self._accept_queue
        if queue is None:
            return False
        waiting = queue()
        if waiting <= self._bound:
            if self.shedding:
                if self._clock() >= self._shedding_until:  # within it for shedding_seconds
                    self._bound = self.max_accept_queue
                    self._over_at = None
                    self._back_within = False
            elif self._over_at is not None:
                self._back_within = True
            return False
        now = self._clock()
        if self.shedding:
            self._shedding_until = now + self.shedding_seconds
        elif (
            self._back_within
            and self._over_at is not None
            and now - self._over_at <= self.shedding_seconds
        ):
            self._bound = self.shedding_accept_queue  # over it again: a lasting overflow
            self._shedding_until = now + self.shedding_seconds
        else:
            self._over_at = now
            self._back_within = False
        return True

    def close(self) -> None:
        if self._monitor is not None:
            self._monitor.close()
