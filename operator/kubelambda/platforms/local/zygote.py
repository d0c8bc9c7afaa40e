"""Local mode's side of the runtime's zygote (kubelambda_runtime/zygote.py, whose docstring
lists the messages): a process that has imported the runtime once and forks each instance's
runtime on request, so a cold start skips Python's start-up.

The local platform starts one with itself and asks it for each instance (instances.py). When
it dies, local mode says so, instances start as new processes meanwhile, and it is started
again after a delay that doubles while it keeps dying young. Runtimes it forked serve on.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from kubelambda.platforms.local.relay import pipe_reader, relay_lines

__all__ = ["ForkedRuntime", "Zygote", "ZygoteRefused", "ZygoteUnavailable", "restart_delay"]

RESTART_SECONDS = 1.0  # after a death, before the first new start
MAX_RESTART_SECONDS = 60.0
STABLE_SECONDS = 10.0  # a zygote that lived this long died of something else than its start
SPAWN_TIMEOUT_SECONDS = 10.0  # its answer to a spawn (it may still be importing at first)
MAX_MESSAGE_BYTES = 64 * 1024


class ZygoteUnavailable(Exception):
    """The zygote cannot fork this instance: start it as a new process."""


class ZygoteRefused(ZygoteUnavailable):
    """The zygote will not fork this instance: its environment sets what only a new process
    applies (the message says which variables)."""


def restart_delay(previous: float | None, lived: float, *, first: float = RESTART_SECONDS) -> float:
    """How long to wait before starting the zygote again after one died ``lived`` seconds after
    its start; ``previous``: the delay before that start (None: it was the first start)."""
    if previous is None or lived >= STABLE_SECONDS:
        return first
    return min(max(previous * 2, first, 1.0), MAX_RESTART_SECONDS)


class ForkedRuntime:
    """A runtime the zygote forked, as local mode's instances use a process: its end comes
    from the zygote (with its exit code) or, once the zygote is gone, from its pidfd."""

    def __init__(self, pid: int, pidfd: int) -> None:
        self.pid = pid
        self._pidfd = pidfd
        self._ended: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        self._watching = False

    @property
    def exited(self) -> bool:
        return self._ended.done()

    async def wait(self) -> int | None:
        """Its exit code (negative: the signal that ended it); None when its zygote died first,
        with the exit status."""
        return await asyncio.shield(self._ended)

    def send_signal(self, signum: int) -> None:
        if self._ended.done():
            raise ProcessLookupError(self.pid)
        signal.pidfd_send_signal(self._pidfd, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def ended(self, code: int | None) -> None:
        if self._ended.done():
            return
        if self._watching:
            asyncio.get_running_loop().remove_reader(self._pidfd)
        os.close(self._pidfd)
        self._ended.set_result(code)

    def orphaned(self) -> None:
        """Its zygote is gone: it ends when its pidfd says so, its exit status unknown."""
        if not self._ended.done():
            self._watching = True
            asyncio.get_running_loop().add_reader(self._pidfd, self.ended, None)


class Zygote:
    """The zygote process, its control socket, and what it forked."""

    def __init__(
        self,
        *,
        output: Callable[[str], None],
        restart_seconds: float = RESTART_SECONDS,
        spawn_timeout: float = SPAWN_TIMEOUT_SECONDS,
    ) -> None:
        self._output = output
        self._restart_seconds = restart_seconds
        self._spawn_timeout = spawn_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._started_at = 0.0
        self._delay: float | None = None  # before the current start; None: the first
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[ForkedRuntime]] = {}
        self._runtimes: dict[int, ForkedRuntime] = {}
        self._tasks: set[asyncio.Future[None]] = set()  # recoveries
        self._relays: set[asyncio.Future[None]] = set()
        self._started = False
        self._closing = False
        self.ready = False  # it has imported everything and answers at once

    @staticmethod
    def supported() -> bool:
        """Whether this system has what the zygote needs (Linux: pidfds, SOCK_SEQPACKET)."""
        return (
            sys.platform.startswith("linux")
            and hasattr(os, "pidfd_open")
            and hasattr(signal, "pidfd_send_signal")
            and hasattr(socket, "SOCK_SEQPACKET")
        )

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self) -> None:
        """Start the zygote, unless it started before (on the running event loop): it imports
        while local mode starts. After a death, it starts again by itself."""
        if not self._started and not self._closing:
            self._started = True
            self._launch()

    def _launch(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-I",  # as a runtime started alone: nothing from the cwd or PYTHONPATH
                    "-u",
                    "-m",
                    "kubelambda_runtime.zygote",
                    str(theirs.fileno()),
                ],
                pass_fds=(theirs.fileno(),),
                env=dict(os.environ),  # what each instance's environment starts from
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C is local mode's: it stops the instances
            )
        except OSError as exc:
            ours.close()
            self._output(
                f"kubelambda local: cannot start the runtime's fork server ({exc}); "
                "instances start as new Python processes"
            )
            self._track(self._recover(None))
            return
        finally:
            theirs.close()
        ours.setblocking(False)
        self._process, self._sock, self._started_at = process, ours, time.monotonic()
        loop = asyncio.get_running_loop()
        loop.add_reader(ours.fileno(), self._readable)
        assert process.stdout is not None
        stdout = os.dup(process.stdout.fileno())
        process.stdout.close()
        relay = asyncio.ensure_future(self._relay(stdout))
        self._relays.add(relay)
        relay.add_done_callback(self._relays.discard)

    async def _relay(self, fd: int) -> None:
        """Its own output (only a failure of its own writes any) into local mode's."""
        reader, transport = await pipe_reader(fd)
        try:
            await relay_lines(reader, self._output, prefix="kubelambda local: fork server: ")
        finally:
            transport.close()

    async def spawn(
        self, *, environment: Mapping[str, str], cwd: str, stdout: int, ready: int
    ) -> ForkedRuntime:
        """Fork a runtime with ``environment`` in ``cwd``, its output on ``stdout``, its
        readiness on ``ready`` (both sent, not closed); ZygoteUnavailable when it cannot."""
        sock = self._sock
        if sock is None:
            raise ZygoteUnavailable("no fork server runs now")
        ident = next(self._ids)
        request = {"op": "spawn", "id": ident, "env": dict(environment), "cwd": cwd, "args": []}
        answer: asyncio.Future[ForkedRuntime] = asyncio.get_running_loop().create_future()
        self._pending[ident] = answer
        try:
            socket.send_fds(sock, [json.dumps(request).encode()], [stdout, ready])
        except ConnectionError as exc:  # it died: its end of file says so, once
            self._pending.pop(ident, None)
            raise ZygoteUnavailable(f"cannot ask the fork server: {exc}") from exc
        except OSError as exc:  # this request: too large, say (an environment of megabytes)
            self._pending.pop(ident, None)
            raise ZygoteRefused(f"the fork server could not be asked: {exc}") from exc
        try:
            async with asyncio.timeout(self._spawn_timeout):
                return await answer
        except TimeoutError:
            self._pending.pop(ident, None)
            self._kill(f"it did not answer within {self._spawn_timeout:g} s")
            raise ZygoteUnavailable("the fork server did not answer") from None

    # messages

    def _readable(self) -> None:
        sock = self._sock
        while sock is not None and sock is self._sock:
            try:
                data, fds, _, _ = socket.recv_fds(sock, MAX_MESSAGE_BYTES, 1)
            except BlockingIOError:
                return
            except OSError:
                data, fds = b"", []
            if not data:
                for fd in fds:
                    os.close(fd)
                self._lost()
                return
            self._handle(json.loads(data), fds)

    def _handle(self, message: dict[str, Any], fds: list[int]) -> None:
        op = message.get("op")
        if op == "ready":
            self.ready = True
            if self._delay is not None:
                self._output(
                    f"kubelambda local: the runtime's fork server is back (pid {self.pid})"
                )
        elif op == "spawned" and not fds:  # no descriptor left here for its pidfd
            # Its zygote reaps it only once it has ended, so the pid is still its own: a
            # runtime nobody could stop must not run.
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(message["pid"]), signal.SIGKILL)
            answer = self._pending.pop(message["id"], None)
            if answer is not None and not answer.done():
                answer.set_exception(ZygoteUnavailable("no descriptor left for its pidfd"))
        elif op == "spawned":
            runtime = ForkedRuntime(int(message["pid"]), fds[0])
            answer = self._pending.pop(message["id"], None)
            if answer is None or answer.done():  # its asker gave up: nobody would stop it
                with contextlib.suppress(ProcessLookupError):
                    runtime.kill()
            else:
                answer.set_result(runtime)
            self._runtimes[runtime.pid] = runtime
        elif op == "exited":
            exited = self._runtimes.pop(int(message["pid"]), None)
            if exited is not None:
                exited.ended(int(message["code"]))
        elif op in ("refused", "failed"):
            answer = self._pending.pop(message["id"], None)
            if answer is not None and not answer.done():
                reason = message.get("reason") or message.get("error") or "no reason given"
                error = ZygoteRefused if op == "refused" else ZygoteUnavailable
                answer.set_exception(error(reason))
        for fd in fds[1:] if op == "spawned" else fds:
            os.close(fd)

    # its end, and its next start

    def _lost(self) -> None:
        """The zygote closed its socket: it died (or is dying). Runtimes it forked serve on."""
        process, sock = self._process, self._sock
        self._process, self._sock, self.ready = None, None, False
        if sock is not None:
            asyncio.get_running_loop().remove_reader(sock.fileno())
            sock.close()
        for answer in self._pending.values():
            if not answer.done():
                answer.set_exception(ZygoteUnavailable("the fork server exited"))
        self._pending.clear()
        for runtime in self._runtimes.values():
            runtime.orphaned()
        self._runtimes.clear()
        if process is not None:
            self._track(self._recover(process))

    async def _recover(self, process: subprocess.Popen[bytes] | None) -> None:
        """Reap the dead zygote, say so, and start another after the delay."""
        lived = time.monotonic() - self._started_at
        if process is not None:
            code = await _reap(process)
            if self._closing:
                return
            self._delay = restart_delay(self._delay, lived, first=self._restart_seconds)
            self._output(
                f"kubelambda local: the runtime's fork server (pid {process.pid}) exited with "
                f"{code}; instances start as new Python processes until it starts again in "
                f"{self._delay:g} s"
            )
        else:
            self._delay = restart_delay(self._delay, 0.0, first=self._restart_seconds)
        await asyncio.sleep(self._delay)
        if not self._closing:
            self._launch()

    def _kill(self, why: str) -> None:
        if self._process is not None:
            self._output(f"kubelambda local: stopping the runtime's fork server: {why}")
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()

    def _track(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        """Stop the zygote: it stops what it still runs, and exits."""
        self._closing = True
        process, sock = self._process, self._sock
        self._process, self._sock = None, None
        if sock is not None:
            asyncio.get_running_loop().remove_reader(sock.fileno())
            sock.close()  # its end of file: it stops its runtimes and exits
        if process is not None:
            await _reap(process)
        for runtime in self._runtimes.values():  # it ended them; their statuses went with it
            runtime.ended(None)
        self._runtimes.clear()
        for task in list(self._tasks):
            task.cancel()
        relays = list(self._relays)
        if relays:  # its output ends with it
            await asyncio.wait(relays, timeout=2.0)
        for task in [*self._tasks, *relays]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _reap(process: subprocess.Popen[bytes], *, within: float = 15.0) -> int:
    """Wait for the zygote to exit (it stops what it runs first); SIGKILL it after ``within``."""
    loop = asyncio.get_running_loop()
    try:
        return await asyncio.wait_for(loop.run_in_executor(None, process.wait), within)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        return await loop.run_in_executor(None, process.wait)
