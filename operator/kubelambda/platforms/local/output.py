"""Local mode's output: lines to stdout written by a thread of their own, so a terminal or
pipe that stops reading blocks that thread, never the event loop that serves every function.

`kubelambda local` hands `Output` to the local platform as its `output`. Beyond `capacity`
waiting lines, new ones are dropped, and how many is said once the writer catches up. It
writes to the file descriptor itself: a thread blocked there holds no lock that the
interpreter's exit would wait for.
"""

from __future__ import annotations

import os
import queue
import threading

__all__ = ["Output"]

_STOP = object()


class Output:
    def __init__(self, fd: int, *, capacity: int = 10_000) -> None:
        self._fd = fd
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
        while (line := self._lines.get()) is not _STOP:
            with self._lock:
                dropped, self._dropped = self._dropped, 0
            text = f"{line}\n"
            if dropped:
                text = f"kubelambda local: {dropped} lines dropped: nobody read them\n{text}"
            data = text.encode("utf-8", "replace")
            try:
                while data:
                    data = data[os.write(self._fd, data) :]
            except OSError:
                return  # the reader is gone (a closed pipe): nothing more to say

    def close(self, *, timeout: float = 2.0) -> None:
        """Write what is waiting (for at most `timeout` seconds), then stop."""
        try:
            self._lines.put(_STOP, timeout=timeout)
        except queue.Full:
            return
        self._thread.join(timeout)
