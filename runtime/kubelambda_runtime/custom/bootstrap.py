"""A custom runtime's ``bootstrap``: found where Lambda looks for it, started with the Runtime
API's address, its output written to the function's log, its end reported.

The custom worker (environment.py) starts one per execution environment. It runs in the
worker's process group, so the server's kill of a timed-out environment ends it too, and the
worker's keeper ends whatever it leaves behind (worker/keeper.py).
"""

from __future__ import annotations

import os
import select
import subprocess
import threading
from collections.abc import Callable, Mapping

from kubelambda_runtime.wire import faults

OPT_ROOT = "/opt"  # where Lambda unpacks layers, which may carry the bootstrap
INVALID_ENTRYPOINT = "Runtime.InvalidEntrypoint"
# Lambda's largest log event; a longer line without a break is written in pieces of this size.
MAX_LINE_BYTES = 256 * 1024


def find(task_root: str) -> str:
    """The bootstrap Lambda would run: the code's, else a layer's; a Fault with Lambda's
    words when there is none."""
    candidates = [os.path.join(task_root, "bootstrap"), os.path.join(OPT_ROOT, "bootstrap")]
    for candidate in candidates:
        if os.path.isfile(candidate):
            return candidate
    raise faults.Fault(
        INVALID_ENTRYPOINT, f"Couldn't find valid bootstrap(s): [{' '.join(candidates)}]"
    )


def start(
    path: str, *, environment: Mapping[str, str], cwd: str
) -> tuple[subprocess.Popen[bytes], int]:
    """Start the bootstrap; it and the read end of the one pipe its stdout and stderr share.
    A bootstrap that cannot be run (not executable, not a program for this machine) is a
    Fault, worded as Lambda words it ("fork/exec PATH: permission denied")."""
    read_end, write_end = os.pipe()
    try:
        process = subprocess.Popen(
            [path],
            env=dict(environment),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=write_end,
            stderr=write_end,
        )
    except OSError as exc:
        os.close(read_end)
        reason = (exc.strerror or str(exc)).lower()
        raise faults.Fault(INVALID_ENTRYPOINT, f"fork/exec {path}: {reason}") from None
    finally:
        os.close(write_end)
    return process, read_end


def watch_exit(process: subprocess.Popen[bytes], ended: Callable[[int], None]) -> None:
    """Call ``ended`` with the bootstrap's exit code (negative: the signal) once it ends."""

    def wait() -> None:
        ended(process.wait())

    threading.Thread(target=wait, name="bootstrap-exit", daemon=True).start()


class Output:
    """The bootstrap's output, written to the log line by line as it comes (``pump``, on a
    thread of its own) and on demand (``drain``: before an answer is passed on, so what the
    bootstrap printed before it answered is in that invocation's log and tail)."""

    def __init__(self, fd: int, write_line: Callable[[str], None]) -> None:
        self._fd = fd
        self._write_line = write_line
        self._lock = threading.Lock()
        self._partial = b""
        self._open = True
        os.set_blocking(fd, False)

    def pump(self) -> None:
        threading.Thread(target=self._pump, name="bootstrap-output", daemon=True).start()

    def _pump(self) -> None:
        poll = select.poll()
        poll.register(self._fd, select.POLLIN)
        while self._open:
            poll.poll()
            self._read(flush=False)

    def drain(self) -> None:
        """Write what the bootstrap has written so far, a last unfinished line included."""
        self._read(flush=True)

    def _read(self, *, flush: bool) -> None:
        with self._lock:
            while self._open:
                try:
                    data = os.read(self._fd, 1 << 16)
                except BlockingIOError:
                    break
                if not data:  # every writer closed it: the bootstrap and all it started
                    self._open = False
                    flush = True
                    os.close(self._fd)
                    break
                self._lines(self._partial + data)
            if flush and self._partial:
                partial, self._partial = self._partial, b""
                self._write_line(partial.decode("utf-8", "replace"))

    def _lines(self, data: bytes) -> None:
        *lines, partial = data.split(b"\n")
        for line in lines:
            self._write_line(line.decode("utf-8", "replace"))
        while len(partial) > MAX_LINE_BYTES:
            self._write_line(partial[:MAX_LINE_BYTES].decode("utf-8", "replace"))
            partial = partial[MAX_LINE_BYTES:]
        self._partial = partial
