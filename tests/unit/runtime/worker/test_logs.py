"""The function's log output: tagging, the tail, Lambda's logging format."""

from __future__ import annotations

import logging
import os

from kubelambda_runtime.worker import logs


def read_all(fd: int) -> str:
    os.set_blocking(fd, False)
    try:
        return os.read(fd, 65536).decode()
    except BlockingIOError:
        return ""


def test_printed_lines_carry_the_request_id_and_partial_lines_wait():
    read_end, write_end = os.pipe()
    sink = logs.LogSink(write_end)
    stream = logs.TaggedStream(sink)
    sink.begin("req", keep_tail=True)
    stream.write("one\ntw")
    assert read_all(read_end) == "req\tone\n"
    stream.write("o\n")
    stream.write("three")
    stream.flush()
    assert read_all(read_end) == "req\ttwo\nreq\tthree\n"
    assert sink.end() == b"req\tone\nreq\ttwo\nreq\tthree\n"
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


def test_the_opening_line_goes_out_with_the_first_line_written():
    read_end, write_end = os.pipe()
    sink = logs.LogSink(write_end)
    sink.begin("r", keep_tail=True, opening="START RequestId: r")
    assert read_all(read_end) == ""
    sink.write_lines("END RequestId: r", "REPORT RequestId: r")
    assert read_all(read_end) == "START RequestId: r\nEND RequestId: r\nREPORT RequestId: r\n"
    assert sink.end() == b"START RequestId: r\nEND RequestId: r\nREPORT RequestId: r\n"
