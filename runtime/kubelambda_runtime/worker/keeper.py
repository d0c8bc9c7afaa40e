"""An execution environment's keeper: the worker's parent process, which ends everything the
environment started when the worker exits.

``python -m kubelambda_runtime.worker`` calls ``keep`` first thing: it forks, the child goes on
as the worker and the parent stays as its keeper. The keeper is a child subreaper, so what a
handler starts and orphans (a double fork, ``cmd &`` in a shell) is reparented to it, rather
than to the server or PID 1, and reaped by it when it ends. When the worker exits (a crash,
or the server closed its socket) the keeper kills whatever is left, even what left the
worker's session, and exits as the worker did, so the server reads the worker's own exit
status. On Lambda nothing an environment started outlives it. A keeper the server kills
(a timeout) is covered by the server (server/descendants.py).
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
from typing import NoReturn

from kubelambda_runtime.wire import processes


def keep() -> None:
    """Fork the keeper and return in the worker. Returns at once, without a keeper, where
    this process cannot be a subreaper or read the process tree (not Linux): then the
    server's kill of the worker's process group is all there is."""
    if not os.path.isdir("/proc/self") or not processes.become_child_subreaper():
        return
    worker = os.fork()
    if worker == 0:
        return  # the flag is not inherited: the worker's orphans come to the keeper
    _close_descriptors()
    status = _reap_until(worker)
    _end_the_rest()
    _exit_as(status)


def _close_descriptors() -> None:
    """Hold none of the worker's descriptors: the server learns that the worker died when its
    socket closes, which must not wait for the keeper."""
    # The open ones, rather than every number up to the limit (which may be in the millions).
    for name in os.listdir("/proc/self/fd"):
        if int(name) > 2:
            with contextlib.suppress(OSError):  # the listing's own, closed already
                os.close(int(name))


def _reap_until(worker: int) -> int:
    """Reap orphans as they end until the worker itself exits; the worker's wait status."""
    while True:
        pid, status = os.waitpid(-1, 0)
        if pid == worker:
            return status


def _end_the_rest() -> None:
    """Kill every process left under the keeper and reap it, until none is left. A process
    forked just before its parent was killed is reparented here and found on the next round."""
    me = os.getpid()
    while True:
        processes.kill_all(processes.descendants(processes.snapshot(), me))
        try:
            os.waitpid(-1, 0)
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        except ChildProcessError:
            return


def _exit_as(status: int) -> NoReturn:
    """Exit with the worker's exit status, or die of the signal that killed it, so that the
    server words it as Lambda does ("signal: killed")."""
    code = os.waitstatus_to_exitcode(status)
    if code >= 0:
        os._exit(code)
    signum = -code
    with contextlib.suppress(ValueError, OSError):  # the worker's core dump is the one to keep
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if signum not in (signal.SIGKILL, signal.SIGSTOP):
        with contextlib.suppress(ValueError, OSError):
            signal.signal(signum, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, [signum])
    os.kill(os.getpid(), signum)
    os._exit(128 + signum)  # a signal whose default is not to end the process
