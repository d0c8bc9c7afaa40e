"""The function's log output (print output, logging records, errors) as Lambda writes it.

The worker routes everything a handler prints or logs through one ``LogSink``, which keeps
the invocation's tail for ``X-Amz-Log-Type: Tail``. Printed lines go out as they are, one
record each; a logging record or an error is one record however many lines it has: on the
stream its line breaks are carriage returns, as AWS's runtime client writes a record to a
plain standard output, and in the tail they stay line breaks, as Lambda's tail shows them.
The START/END/REPORT lines are in wire/loglines.py.
"""

from __future__ import annotations

import io
import logging
import os
import threading
import time

# awslambdaric's text format for an error: its lines joined by carriage returns on standard
# output, and a stack trace's indentation in no-break spaces.
RECORD_BREAK = "\r"
TRACE_INDENT = "\u00a0"


class LogSink:
    """Writes whole records to a file descriptor and remembers the current invocation's tail."""

    TAIL_BYTES = 4096

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._lock = threading.Lock()
        self.request_id = ""
        self._tail: bytearray | None = None

    def begin(self, request_id: str, *, keep_tail: bool, opening: str | None = None) -> None:
        """Start an invocation's records, and write ``opening`` (its START line) now: an
        invocation that times out or crashes before it prints has its START too."""
        self.request_id = request_id
        self._tail = bytearray() if keep_tail else None
        if opening is not None:
            self.write_lines(opening)

    def end(self) -> bytes | None:
        tail, self._tail = self._tail, None
        self.request_id = ""
        return bytes(tail[-self.TAIL_BYTES :]) if tail is not None else None

    def write_line(self, line: str) -> None:
        self.write_lines(line)

    def write_lines(self, *records: str) -> None:
        """Write each record as one line; a record's own line breaks become RECORD_BREAK."""
        text = "".join(record.rstrip("\n") + "\n" for record in records)
        stream = text
        if text.count("\n") > len(records):  # a record of several lines
            stream = "".join(
                record.rstrip("\n").replace("\n", RECORD_BREAK) + "\n" for record in records
            )
        data = stream.encode("utf-8", "replace")
        with self._lock:
            os.write(self._fd, data)
            if self._tail is not None:
                self._tail += data if stream is text else text.encode("utf-8", "replace")
                # Keep memory bounded for chatty handlers: only the tail is ever returned.
                if len(self._tail) > 4 * self.TAIL_BYTES:
                    del self._tail[: -self.TAIL_BYTES]


class TaggedStream(io.TextIOBase):
    """Stands in for sys.stdout/stderr: each line a handler prints is a record of its own,
    unprefixed, as Lambda writes print output."""

    def __init__(self, sink: LogSink) -> None:
        self._sink = sink
        self._partial = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        pending = self._partial + text
        *lines, self._partial = pending.split("\n")
        if lines:
            self._sink.write_lines(*lines)
        return len(text)

    def flush(self) -> None:
        if self._partial:
            line, self._partial = self._partial, ""
            self._sink.write_line(line)


def error_record(error_type: str, message: str, stack: list[str]) -> str:
    """An unhandled error as Lambda logs it, one record: ``[ERROR] Type: message``, then
    ``Traceback (most recent call last):`` and the stack, its indentation in no-break spaces
    (awslambdaric's log_error in its text format)."""
    lines = [_description(error_type, message), "Traceback (most recent call last):"]
    for frame in stack:
        if not frame:
            lines.append("")
            continue
        for line in frame.splitlines():
            stripped = line.lstrip(" ")
            lines.append(TRACE_INDENT * (len(line) - len(stripped)) + stripped)
    return "\n".join(lines)


def _description(error_type: str, message: str) -> str:
    description = "[ERROR]"
    if error_type:
        description += f" {error_type}"
    if message:
        description += f": {message}" if error_type else f" {message}"
    return description


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
    """Writes each logging record as one record, its traceback included."""

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
