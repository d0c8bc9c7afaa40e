"""The function's log output (logging records, print output) as Lambda writes it.

The worker routes everything a handler prints or logs through one ``LogSink``, which tags
each line with the current request id and keeps the invocation's tail for
``X-Amz-Log-Type: Tail``. The START/END/REPORT lines are in wire/loglines.py.
"""

from __future__ import annotations

import io
import logging
import os
import threading
import time


class LogSink:
    """Writes whole lines to a file descriptor and remembers the current invocation's tail."""

    TAIL_BYTES = 4096

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._lock = threading.Lock()
        self.request_id = ""
        self._tail: bytearray | None = None
        self._opening: str | None = None

    def begin(self, request_id: str, *, keep_tail: bool, opening: str | None = None) -> None:
        """Start an invocation's lines; `opening` (the START line) goes out with the first
        line written, so a quiet invocation costs one write, not two."""
        self.request_id = request_id
        self._tail = bytearray() if keep_tail else None
        self._opening = opening

    def end(self) -> bytes | None:
        tail, self._tail = self._tail, None
        self.request_id = ""
        return bytes(tail[-self.TAIL_BYTES :]) if tail is not None else None

    def write_line(self, line: str) -> None:
        self.write_lines(line)

    def write_lines(self, *lines: str) -> None:
        if self._opening is not None:
            lines, self._opening = (self._opening, *lines), None
        data = "".join(line if line.endswith("\n") else line + "\n" for line in lines).encode(
            "utf-8", "replace"
        )
        with self._lock:
            os.write(self._fd, data)
            if self._tail is not None:
                self._tail += data
                # Keep memory bounded for chatty handlers: only the tail is ever returned.
                if len(self._tail) > 4 * self.TAIL_BYTES:
                    del self._tail[: -self.TAIL_BYTES]


class TaggedStream(io.TextIOBase):
    """Stands in for sys.stdout/stderr: each line a handler prints carries the request id."""

    def __init__(self, sink: LogSink) -> None:
        self._sink = sink
        self._partial = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        pending = self._partial + text
        *lines, self._partial = pending.split("\n")
        for line in lines:
            self._emit(line)
        return len(text)

    def flush(self) -> None:
        if self._partial:
            line, self._partial = self._partial, ""
            self._emit(line)

    def _emit(self, line: str) -> None:
        request_id = self._sink.request_id
        self._sink.write_line(f"{request_id}\t{line}" if request_id else line)


class LambdaFormatter(logging.Formatter):
    """``[LEVEL]\\t2024-01-01T00:00:00.000Z\\t<request id>\\t<message>``, Lambda's text format."""

    converter = staticmethod(time.gmtime)

    def __init__(self, sink: LogSink) -> None:
        super().__init__(
            "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s",
            "%Y-%m-%dT%H:%M:%S",
        )
        self._sink = sink

    def format(self, record: logging.LogRecord) -> str:
        record.aws_request_id = self._sink.request_id
        return super().format(record)


class SinkHandler(logging.Handler):
    def __init__(self, sink: LogSink) -> None:
        super().__init__()
        self._sink = sink
        self.setFormatter(LambdaFormatter(sink))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._sink.write_line(self.format(record))
        except Exception:
            self.handleError(record)


def install(sink: LogSink, *, level: str | None) -> None:
    """Route logging and print output through the sink, as Lambda's runtime does."""
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(SinkHandler(sink))
    # Lambda leaves the root logger at WARNING unless the function sets a level.
    root.setLevel((level or "WARNING").upper())
