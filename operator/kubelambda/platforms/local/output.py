"""Local mode's output: lines to stdout written by a thread of their own, so a terminal or
pipe that stops reading blocks that thread, never the event loop that serves every function;
all the lines waiting when it wakes go out in one write.

`kubelambda local` hands `Output` to the local platform as its `output`. Beyond `capacity`
waiting lines, new ones are dropped, and how many is said once the writer catches up. It
writes to the file descriptor itself: a thread blocked there holds no lock that the
interpreter's exit would wait for. Given a `copy`, the same thread also hands it each line
(local mode's per-function log files), flushing it whenever no line waits.

A function's log record of several lines (a traceback) reaches local mode as one line whose
breaks are carriage returns, as Lambda's runtime writes it; on the terminal each break starts
an indented line, where a bare carriage return would overwrite what came before. The copy keeps
the record as it came, one line.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from typing import Protocol

__all__ = ["LineCopy", "Output"]

_STOP = object()
# Lines written in one write at most.
_BATCH = 1_000
# How long the writer, woken by a line, waits for more before it writes.
_GATHER_SECONDS = 0.005
# What a record's own line break (a carriage return) becomes on the terminal.
CONTINUATION = "\n    "


class LineCopy(Protocol):
    """Where the writer thread also puts every line; its OSError stops the copy, said once."""

    def write(self, line: str) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


class Output:
    def __init__(self, fd: int, *, capacity: int = 10_000, copy: LineCopy | None = None) -> None:
        self._fd = fd
        self._copy = copy
        self._capacity = capacity
        # Appended by the event loop, taken by the writer thread: a deque's append and popleft
        # are atomic, so neither takes a lock per line.
        self._lines: deque[object] = deque()
        self._waiting = threading.Event()  # set when lines may wait for a sleeping writer
        self._dropped = 0
        self._lock = threading.Lock()  # for _dropped only: counted by one, reset by the other
        self._thread = threading.Thread(target=self._write, name="local-output", daemon=True)
        self._thread.start()

    def __call__(self, line: str) -> None:
        # Called on the event loop for every line an instance prints, three per invocation:
        # an append, and the writer woken only when it sleeps. With a lock and a wake-up per
        # line (a queue.Queue) and a write per line, local mode's process spent about 160 µs
        # of CPU per invocation of a function on 8 instances, against 126 µs this way.
        if len(self._lines) >= self._capacity:
            with self._lock:
                self._dropped += 1
            return
        self._lines.append(line)
        if not self._waiting.is_set():
            self._waiting.set()

    def _write(self) -> None:
        reading = True  # until the reader is gone (a closed pipe): then only the copy
        try:
            while True:
                lines = self._take()
                stop = lines[-1] is _STOP
                if stop:
                    lines.pop()
                with self._lock:
                    dropped, self._dropped = self._dropped, 0
                # All the lines waiting in one write: one system call, not one per line.
                text = "".join(f"{line}\n" for line in lines).replace("\r", CONTINUATION)
                if dropped:
                    text = f"kubelambda local: {dropped} lines dropped: nobody read them\n{text}"
                data = text.encode("utf-8", "replace")
                try:
                    while reading and data:
                        data = data[os.write(self._fd, data) :]
                except OSError:
                    reading = False
                    if self._copy is None:
                        return  # nothing more to say, nor anywhere to copy it
                for line in lines:
                    self._copy_line(str(line))
                if stop:
                    return
        finally:
            self._stop_copy(None)

    def _take(self) -> list[object]:
        """The lines waiting (at most _BATCH, up to and with a stop), once there is one; the
        copy is flushed whenever none waits."""
        waiting = self._lines
        while not waiting:
            if self._copy is not None:
                try:
                    self._copy.flush()
                except OSError as exc:
                    self._stop_copy(exc)
                    continue  # its message waits now
            self._waiting.clear()
            if not waiting:  # nothing came in between: sleep until something does
                self._waiting.wait()
                # Woken by the first line: take those that follow it closely with it, rather
                # than wake for each (a GIL handover and a write each, thousands a second).
                time.sleep(_GATHER_SECONDS)
        taken: list[object] = []
        while waiting and len(taken) < _BATCH:
            line = waiting.popleft()
            taken.append(line)
            if line is _STOP:
                break
        return taken

    def _copy_line(self, line: str) -> None:
        if self._copy is not None:
            try:
                self._copy.write(line)
            except OSError as exc:
                self._stop_copy(exc)

    def _stop_copy(self, error: OSError | None) -> None:
        copy, self._copy = self._copy, None
        if copy is None:
            return
        try:
            copy.close()
        except OSError as exc:
            error = error or exc
        if error is not None:
            # From the writer thread, which takes it before it sleeps again.
            self._lines.append(f"kubelambda local: function logs no longer go to files: {error}")

    def close(self, *, timeout: float = 2.0) -> None:
        """Write what is waiting (for at most `timeout` seconds), then stop."""
        self._lines.append(_STOP)
        self._waiting.set()
        self._thread.join(timeout)
