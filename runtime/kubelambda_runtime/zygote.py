"""``python -I -u -m kubelambda_runtime.zygote FD``: local mode's fork server. It imports what a
runtime and its workers import, once, then forks a runtime for each request on the socket FD,
so an instance's start costs a fork and the handler's own init, not Python's start-up.

Local mode (kubelambda/platforms/local/zygote.py) starts it and holds the other end of FD, a
SOCK_SEQPACKET socket: one JSON object per message, descriptors alongside.

- the zygote says ``{"op": "ready", "pid"}`` once it has imported everything;
- ``{"op": "spawn", "id", "env", "cwd", "args"}`` with two descriptors (the runtime's stdout
  and stderr; its readiness pipe, for ``--ready-fd``) is answered ``{"op": "spawned", "id",
  "pid"}`` with a pidfd of the runtime, ``{"op": "refused", "id", "reason"}`` when only a new
  process could apply ``env`` (it changes what the interpreter or the loader read at start:
  start one the usual way), or ``{"op": "failed", "id", "error"}``;
- ``{"op": "exited", "pid", "code"}`` when a runtime it forked has ended (negative code: the
  signal that ended it).

It is single-threaded and runs no event loop, so forking is safe; it is a child subreaper, and
what a runtime that died leaves behind (its workers' keepers) is killed with everything under
it. When local mode closes its end, the zygote stops its runtimes (SIGTERM, then SIGKILL after
STOP_GRACE_SECONDS) and exits.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import select
import signal
import socket
import sys
import time
from collections.abc import Mapping
from typing import Any

from kubelambda_runtime import __main__ as runtime
from kubelambda_runtime import forking
from kubelambda_runtime.wire import processes
from kubelambda_runtime.wire.startup import startup_differences

# Imported before the first fork, beyond what this module imports: what the runtime's server
# imports late (to overlap its imports with the workers' init when it starts alone), and what
# the standard library imports on first use: ctypes (the subreaper flag), shutil (argparse's
# help formatter), encodings.idna (a listening socket's host name). /metrics' prometheus_client
# is left out: local mode does not scrape instances.
PRELOAD = (
    "argparse",  # a pod's runtime, started without options, never imports it
    "uvloop",
    "httptools",
    "ctypes",
    "shutil",
    "encodings.idna",
    "kubelambda_runtime.server.pool",
    "kubelambda_runtime.server.endpoints",
    "kubelambda_runtime.server.httpserver",
    "kubelambda_runtime.server.ready",
)
MAX_MESSAGE_BYTES = 1024 * 1024
STOP_GRACE_SECONDS = 5.0


def fork_runtime(
    *, env: Mapping[str, str], cwd: str, args: list[str], ready: int, stdout: int | None = None
) -> int:
    """Fork a runtime (``python -m kubelambda_runtime ARGS --ready-fd READY``) that starts as a
    new process would, with exactly ``env``, in ``cwd``, keeping only ``ready`` (and ``stdout``
    on 1 and 2; None: this process's own); its pid. Also the warm pool's (warmpool/)."""
    pid = os.fork()
    if pid == 0:
        forking.run_child(
            lambda: run_runtime(env=env, cwd=cwd, args=args, ready=ready, stdout=stdout)
        )
    return pid


def run_runtime(
    *, env: Mapping[str, str], cwd: str, args: list[str], ready: int, stdout: int | None = None
) -> int:
    """In a child just forked: become the runtime ``fork_runtime`` describes and run it; its
    exit status. Also the warm pool's, in a child it forked before it knew ``env``."""
    forking.become(
        environment=env, cwd=cwd, keep=(ready,), stdout=stdout, argv=[runtime.__file__, *args]
    )
    return runtime.main([*args, "--ready-fd", str(ready)], start_workers=forking.fork_worker)


def reap_ended() -> list[tuple[int, int]]:
    """Reap, without waiting, every child that has ended: its pid and exit code (negative: the
    signal that ended it). Also the warm pool's."""
    ended: list[tuple[int, int]] = []
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
        ended.append((pid, os.waitstatus_to_exitcode(status)))
    return ended


def _message(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


class Zygote:
    """The fork server's loop, over the control socket ``control``."""

    def __init__(self, control: socket.socket) -> None:
        self._control = control
        self._own = dict(os.environ)  # as local mode started it: what a fork keeps
        self._runtimes: set[int] = set()
        self._wake = -1  # the read end of the signal wake-up pipe, once serving

    def serve(self) -> int:
        processes.become_child_subreaper()
        # Ctrl-C in local mode's terminal is local mode's to act on: it stops the runtimes.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        self._wake, wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_write)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # the wake-up fd wakes select
        self._send(_message(op="ready", pid=os.getpid()))
        while True:
            if self._wait(None) and not self._receive():
                break  # local mode closed its end
        # (A zygote that fails on its own instead leaves its runtimes serving.)
        self._stop_all()
        return 0

    def _wait(self, timeout: float | None, *, messages: bool = True) -> bool:
        """Wait for a message (unless not ``messages``) or a child's end (reaped here); whether
        a message is waiting."""
        control = self._control.fileno()
        watched = [control, self._wake] if messages else [self._wake]
        readable, _, _ = select.select(watched, [], [], timeout)
        if self._wake in readable:
            self._drain_wake()
            self._reap()
        return control in readable

    def _drain_wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wake, 512):
                pass

    # requests

    def _receive(self) -> bool:
        """Handle one message; False when local mode closed its end."""
        try:
            data, fds, flags, _ = socket.recv_fds(self._control, MAX_MESSAGE_BYTES, 2)
        except ConnectionError:
            return False
        ident = None
        try:
            if not data and not fds:
                return False
            request = json.loads(data)
            ident = request.get("id")
            if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC) or len(fds) != 2:
                self._send(_message(op="failed", id=ident, error="malformed request"))
            elif request.get("op") == "spawn":
                self._spawn(request, stdout=fds[0], ready=fds[1])
            else:
                self._send(_message(op="failed", id=ident, error="unknown op"))
        except (ValueError, AttributeError, KeyError, TypeError) as exc:
            self._send(_message(op="failed", id=ident, error=f"malformed request: {exc!r}"))
        finally:
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
        return True

    def _spawn(self, request: dict[str, Any], *, stdout: int, ready: int) -> None:
        ident = request["id"]
        env = {str(k): str(v) for k, v in request["env"].items()}
        args = [str(arg) for arg in request["args"]]
        cwd = str(request["cwd"])
        differing = startup_differences(self._own, env)
        if differing:
            reason = f"its environment sets {', '.join(differing)}, which a process reads at start"
            self._send(_message(op="refused", id=ident, reason=reason))
            return
        try:
            pid = fork_runtime(env=env, cwd=cwd, args=args, stdout=stdout, ready=ready)
        except OSError as exc:
            self._send(_message(op="failed", id=ident, error=f"fork: {exc}"))
            return
        self._runtimes.add(pid)
        try:
            pidfd = os.pidfd_open(pid)
        except OSError as exc:  # no descriptor left: nobody could stop it
            os.kill(pid, signal.SIGKILL)  # not reaped yet, so the pid is still its own
            self._send(_message(op="failed", id=ident, error=f"pidfd: {exc}"))
            return
        try:
            self._send(_message(op="spawned", id=ident, pid=pid), fds=[pidfd])
        finally:
            os.close(pidfd)

    def _send(self, data: bytes, fds: list[int] | None = None) -> None:
        with contextlib.suppress(OSError):  # local mode is gone: the loop sees its end next
            socket.send_fds(self._control, [data], fds or [])

    # children

    def _reap(self) -> None:
        """Reap every child that ended; for a runtime, end what it left and tell local mode."""
        ended = [(pid, code) for pid, code in reap_ended() if pid in self._runtimes]
        self._runtimes.difference_update(pid for pid, _ in ended)
        if ended:
            self._sweep()
        for pid, code in ended:
            self._send(_message(op="exited", pid=pid, code=code))

    def _sweep(self) -> None:
        """Kill every child that is not a runtime, with everything under it: only a dead
        runtime leaves any here (a living one is its own workers' subreaper)."""
        table = processes.snapshot()
        for pid in processes.children(table, os.getpid()):
            if pid not in self._runtimes:
                processes.kill_all([pid, *processes.descendants(table, pid)])

    def _stop_all(self) -> None:
        """Local mode is gone: SIGTERM every runtime, SIGKILL all that is left under the zygote
        after the grace, and reap it (for at most another grace)."""
        for pid in self._runtimes:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        while self._runtimes and (left := deadline - time.monotonic()) > 0:
            self._wait(left, messages=False)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        while time.monotonic() < deadline:
            table = processes.snapshot()
            processes.kill_all(processes.descendants(table, os.getpid()))
            try:
                if os.waitpid(-1, os.WNOHANG)[0] == 0:
                    select.select([self._wake], [], [], 0.05)  # woken by the next SIGCHLD
                    self._drain_wake()
            except ChildProcessError:
                return


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not argv[1].isdigit():
        print("usage: python -m kubelambda_runtime.zygote FD (started by kubelambda local)")  # noqa: T201
        return 2
    control = socket.socket(fileno=int(argv[1]))
    for name in PRELOAD:
        importlib.import_module(name)
    return Zygote(control).serve()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
