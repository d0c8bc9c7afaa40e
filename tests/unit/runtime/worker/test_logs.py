"""The function's log output: printed lines, records of several lines, the tail, formats."""

from __future__ import annotations

import logging
import os
import sys

import pytest

from kubelambda_runtime.worker import logs


def read_all(fd: int) -> str:
    os.set_blocking(fd, False)
    try:
        return os.read(fd, 65536).decode()
    except BlockingIOError:
        return ""


def test_printed_lines_are_unprefixed_and_partial_lines_wait():
    read_end, write_end = os.pipe()
    sink = logs.LogSink(write_end)
    stream = logs.TaggedStream(sink)
    sink.begin("req", keep_tail=True)
    stream.write("one\ntw")
    assert read_all(read_end) == "one\n"
    stream.write("o\n")
    stream.write("three")
    stream.flush()
    assert read_all(read_end) == "two\nthree\n"
    assert sink.end() == b"one\ntwo\nthree\n"
    stream.write("outside\n")
    assert read_all(read_end) == "outside\n"


def test_tail_keeps_only_the_last_4kb():
    read_end, write_end = os.pipe()
    sink = logs.LogSink(write_end)
    sink.begin("r", keep_tail=True)
    for index in range(200):
        sink.write_line(f"{index:04d}" + "x" * 60)
        read_all(read_end)
    tail = sink.end()
    assert tail is not None
    assert len(tail) == logs.LogSink.TAIL_BYTES
    assert tail.endswith(b"0199" + b"x" * 60 + b"\n")
    sink.begin("r", keep_tail=False)
    assert sink.end() is None


def test_logging_format_is_lambdas():
    _, write_end = os.pipe()
    sink = logs.LogSink(write_end)
    sink.begin("abc", keep_tail=False)
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "hello %s", ("you",), None)
    line = logs.SinkHandler(sink).format(record)
    level, stamp, request_id, message = line.split("\t")
    assert (level, request_id, message) == ("[WARNING]", "abc", "hello you")
    assert stamp.endswith("Z") and "T" in stamp and len(stamp) == 24


def test_the_opening_line_goes_out_at_once():
    # An invocation that prints nothing and then times out or crashes has its START line.
    read_end, write_end = os.pipe()
    sink = logs.LogSink(write_end)
    sink.begin("r", keep_tail=True, opening="START RequestId: r")
    assert read_all(read_end) == "START RequestId: r\n"
    sink.write_lines("END RequestId: r", "REPORT RequestId: r")
    assert read_all(read_end) == "END RequestId: r\nREPORT RequestId: r\n"
    assert sink.end() == b"START RequestId: r\nEND RequestId: r\nREPORT RequestId: r\n"


def test_a_record_of_several_lines_is_one_line_on_the_stream_and_lines_in_the_tail():
    read_end, write_end = os.pipe()
    sink = logs.LogSink(write_end)
    sink.begin("r", keep_tail=True)
    sink.write_lines("first", "[ERROR] E: m\nTraceback (most recent call last):\n", "last")
    assert read_all(read_end) == "first\n[ERROR] E: m\rTraceback (most recent call last):\nlast\n"
    assert sink.end() == b"first\n[ERROR] E: m\nTraceback (most recent call last):\nlast\n"


def test_a_logged_exception_is_one_record():
    read_end, write_end = os.pipe()
    sink = logs.LogSink(write_end)
    sink.begin("abc", keep_tail=False)
    try:
        raise KeyError("gone")
    except KeyError:
        record = logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "lookup failed", (), sys.exc_info()
        )
    logs.SinkHandler(sink).emit(record)
    written = read_all(read_end)
    assert written.count("\n") == 1 and written.endswith("\n")
    parts = written.rstrip("\n").split("\r")
    assert parts[0].endswith("\tabc\tlookup failed")
    assert parts[1] == "Traceback (most recent call last):"
    assert parts[-1] == "KeyError: 'gone'"


@pytest.mark.parametrize(
    ("error_type", "message", "stack", "expected"),
    [
        (
            "ValueError",
            "no luck",
            ['  File "/var/task/app.py", line 2, in handler\n    raise ValueError("no luck")\n'],
            [
                "[ERROR] ValueError: no luck",
                "Traceback (most recent call last):",
                '\u00a0\u00a0File "/var/task/app.py", line 2, in handler',
                '\u00a0\u00a0\u00a0\u00a0raise ValueError("no luck")',
            ],
        ),
        # A runtime fault has no stack; awslambdaric still writes the Traceback line.
        (
            "Runtime.ImportModuleError",
            "Unable to import module 'app': No module named 'app'",
            [],
            [
                "[ERROR] Runtime.ImportModuleError: Unable to import module 'app': No module "
                "named 'app'",
                "Traceback (most recent call last):",
            ],
        ),
        ("KeyError", "", [], ["[ERROR] KeyError", "Traceback (most recent call last):"]),
        ("", "just this", [""], ["[ERROR] just this", "Traceback (most recent call last):", ""]),
    ],
    ids=["exception", "fault", "no-message", "no-type"],
)
def test_an_error_record_is_awslambdaric_s_text_format(error_type, message, stack, expected):
    assert logs.error_record(error_type, message, stack).split("\n") == expected
