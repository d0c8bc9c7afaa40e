"""Local mode's output: lines to stdout written by a thread of their own, so a terminal or
pipe that stops reading blocks that thread, never the event loop that serves every function.

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

import contextlib
import os
import queue
import threading
from typing import Protocol

__all__ = ["LineCopy", "Output"]

_STOP = object()
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
        self._lines: queue.Queue[object] = queue.Queue(maxsize=capacity)
        self._dropped = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._write, name="local-output", daemon=True)
        self._thread.start()

    def __call__(self, line: str) -> None:
        try:
            self._lines.put_nowait(line)
        except queue.Full:
            with self._lock:
                self._dropped += 1

    def _write(self) -> None:
        reading = True  # until the reader is gone (a closed pipe): then only the copy
        try:
            while (line := self._next()) is not _STOP:
                with self._lock:
                    dropped, self._dropped = self._dropped, 0
                text = f"{line}\n".replace("\r", CONTINUATION)
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
                self._copy_line(str(line))
        finally:
            self._stop_copy(None)

    def _next(self) -> object:
        try:
            return self._lines.get_nowait()
        except queue.Empty:
            if self._copy is not None:
                try:
                    self._copy.flush()
                except OSError as exc:
                    self._stop_copy(exc)
            return self._lines.get()

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
            with contextlib.suppress(queue.Full):
                self._lines.put_nowait(
                    f"kubelambda local: function logs no longer go to files: {error}"
                )

    def close(self, *, timeout: float = 2.0) -> None:
        """Write what is waiting (for at most `timeout` seconds), then stop."""
        try:
            self._lines.put(_STOP, timeout=timeout)
        except queue.Full:
            return
        self._thread.join(timeout)
