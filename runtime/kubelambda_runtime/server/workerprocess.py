"""A worker process as the server sees it: its process, and the server's end of its socket.

The pool (pool.py) spawns one per execution slot with the board (wire/board.py), sends it
invocations in frames, hands connections over through it (handover.py), and kills and
reaps it when it must be replaced: with everything its environment started (descendants.py).
A worker is a new Python process (``exec_worker``, prespawn.py) unless the caller gives another
way to start one: a runtime forked by the zygote forks its first workers (forking.py).
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from collections.abc import Callable, Mapping
from typing import Any

from kubelambda_runtime.server.descendants import Descendants, kill_environment
from kubelambda_runtime.server.frameprotocol import FrameProtocol
from kubelambda_runtime.server.prespawn import Start, Started, exec_worker, start_process
from kubelambda_runtime.wire import framing, processes
from kubelambda_runtime.wire.board import Board

__all__ = ["Start", "Started", "WorkerProcess", "exec_worker"]


class WorkerProcess:
    """A running worker: its process and the server's end of its socket."""

    def __init__(self, popen: Started, sock: socket.socket, *, descendants: Descendants) -> None:
        self.popen = popen
        self._sock = sock
        self._descendants = descendants
        self._protocol: FrameProtocol | None = None
        # Frames of type "returned", and the end of the socket, outside of any call.
        self.on_returned: Callable[[dict[str, Any], bytes], None] = lambda header, body: None
        self.on_lost: Callable[[], None] = lambda: None
        # The most resident memory the environment's processes held, in kB: read from /proc
        # before a kill, and from the worker's (or its keeper's) rusage when it is reaped.
        self.high_water_kb: int | None = None
        self._reaping = threading.Lock()

    @classmethod
    def spawn(
        cls,
        environment: Mapping[str, str],
        *,
        cwd: str,
        board: Board,
        slot: int,
        descendants: Descendants,
        start: Start = exec_worker,
    ) -> WorkerProcess:
        popen, ours = start_process(environment, cwd=cwd, board=board, slot=slot, start=start)
        descendants.spawned(popen.pid)
        return cls(popen, ours, descendants=descendants)

    async def _connection(self) -> FrameProtocol:
        if self._protocol is None:
            _, self._protocol = await asyncio.get_running_loop().create_unix_connection(
                lambda: FrameProtocol(side={"returned": self._returned}, lost=self._lost),
                sock=self._sock,
            )
        return self._protocol

    def _returned(self, header: dict[str, Any], body: bytes) -> None:
        self.on_returned(header, body)

    def _lost(self) -> None:
        self.on_lost()

    def send(self, header: dict[str, Any], body: bytes = b"") -> None:
        """Send a frame that needs no answer (the worker is known to be connected)."""
        assert self._protocol is not None
        self._protocol.send(framing.encode(header, body))

    def can_hand_over(self) -> bool:
        """Whether a frame sent beside the transport would keep its place in line."""
        return self._protocol is not None and self._protocol.idle_writer()

    def hand_over(self, header: dict[str, Any], body: bytes, fd: int) -> bool:
        """Send a frame with a copy of descriptor ``fd``; False (nothing sent) when the
        socket cannot take it now."""
        protocol = self._protocol
        if protocol is None or not protocol.idle_writer():
            return False
        frame = framing.encode({**header, "fd": True}, body)
        try:
            sent = socket.send_fds(self._sock, [frame], [fd])
        except (BlockingIOError, InterruptedError, OSError):
            return False
        if sent < len(frame):
            protocol.send(frame[sent:])  # the descriptor went with the first bytes
        return True

    def exit_reason(self) -> str | None:
        """The reason the worker gave before it exited on its own (out of memory)."""
        if self._protocol is None:
            return None
        return self._protocol.reason_given()

    async def receive(self) -> tuple[dict[str, Any], bytes]:
        return await (await self._connection()).receive()

    async def call(self, frame: bytes, *, within: float) -> tuple[dict[str, Any], bytes]:
        """Send one frame and wait for the answer; TimeoutError after ``within`` seconds."""
        connection = self._protocol or await self._connection()
        connection.send(frame)
        answer = connection.receive()
        # A timer on the future itself rather than asyncio.wait_for, which would wrap
        # every invocation in a task of its own.
        timer = asyncio.get_running_loop().call_later(within, _expire, answer)
        try:
            return await answer
        finally:
            timer.cancel()

    def kill(self) -> None:
        """End the environment: the worker and every process it started."""
        if self.popen.returncode is None:  # once reaped, its pid may be another process's
            self.measure()  # a killed process's rusage never reaches the server
            kill_environment(self.popen.pid)

    def measure(self) -> None:
        """Take in the memory high-water mark of the worker's living processes."""
        pid = self.popen.pid
        tree = [pid, *processes.descendants(processes.snapshot(), pid)]
        self._took(processes.high_water_kb(tree))

    @property
    def max_memory_mb(self) -> int | None:
        """The environment's Max Memory Used as Lambda reports it (MB), once known."""
        return None if self.high_water_kb is None else self.high_water_kb // 1024

    def _took(self, kb: int | None) -> None:
        if kb is not None and kb > (self.high_water_kb or 0):
            self.high_water_kb = kb

    def _wait(self) -> int:
        """Reap the process with its rusage: its ru_maxrss covers the worker, which its
        keeper has reaped (a process's rusage includes its waited-for children's peak)."""
        with self._reaping:
            if self.popen.returncode is None:
                try:
                    _, status, usage = os.wait4(self.popen.pid, 0)
                except ChildProcessError:  # reaped elsewhere: as Popen says then
                    return self.popen.wait()
                self._took(usage.ru_maxrss)
                self.popen.returncode = os.waitstatus_to_exitcode(status)
            return self.popen.returncode

    async def reap(self) -> int | None:
        """Wait (briefly) for the process to end and return its exit code; then end and reap
        what the environment left to the server."""
        self._close()
        loop = asyncio.get_running_loop()
        try:
            code = await asyncio.wait_for(loop.run_in_executor(None, self._wait), 5.0)
        except TimeoutError:
            self.kill()
            code = await loop.run_in_executor(None, self._wait)
        self._descendants.reaped(self.popen.pid)
        await self._descendants.sweep()
        return code

    def close(self) -> None:
        """Ask the worker to finish: it exits when its socket closes."""
        self._close()

    def _close(self) -> None:
        if self._protocol is not None:
            self._protocol.close()
        else:
            self._sock.close()


def _expire(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())
