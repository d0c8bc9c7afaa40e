"""Local mode's output hands every line to its copy (the per-function log files) from its own
writer thread: flushed when idle, closed at the end, and dropped, said once, when it fails."""

from __future__ import annotations

import contextlib
import os
import select
import threading
import time
from collections.abc import Iterator

import pytest

from kubelambda.platforms.local.output import Output
from support.waiting import wait_for


class Copy:
    """A LineCopy that records what the writer thread does to it."""

    def __init__(self, *, fail_on: str | None = None) -> None:
        self.events: list[str] = []
        self.fail_on = fail_on
        self.threads: set[str] = set()
        self.closed = threading.Event()

    def write(self, line: str) -> None:
        self.threads.add(threading.current_thread().name)
        if line == self.fail_on:
            raise OSError(28, "No space left on device")
        self.events.append(f"write {line}")

    def flush(self) -> None:
        self.events.append("flush")

    def close(self) -> None:
        self.events.append("close")
        self.closed.set()


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    read, write = os.pipe()
    yield read, write
    for fd in (read, write):
        with contextlib.suppress(OSError):
            os.close(fd)


def _read_lines(fd: int, count: int) -> list[str]:
    data = b""
    while data.count(b"\n") < count:
        data += os.read(fd, 65536)
    return data.decode().splitlines()


def test_every_line_goes_to_the_copy_too_from_the_writer_thread(pipe: tuple[int, int]) -> None:
    read, write = pipe
    copy = Copy()
    output = Output(write, copy=copy)
    output("[fn] one")
    output("[fn] two")
    assert _read_lines(read, 2) == ["[fn] one", "[fn] two"]
    wait_for(lambda: "flush" in copy.events, timeout=5, what="the idle writer to flush the copy")
    output.close()
    assert copy.closed.is_set()
    writes = [e for e in copy.events if e.startswith("write")]
    assert writes == ["write [fn] one", "write [fn] two"]
    assert copy.events[-1] == "close"
    assert copy.threads == {"local-output"}


def test_a_failing_copy_is_dropped_and_said_once(pipe: tuple[int, int]) -> None:
    read, write = pipe
    copy = Copy(fail_on="[fn] full")
    output = Output(write, copy=copy)
    for line in ("[fn] before", "[fn] full", "[fn] after"):
        output(line)
    lines = _read_lines(read, 4)
    output.close()
    assert lines[:2] == ["[fn] before", "[fn] full"]
    assert sorted(lines[2:]) == sorted(
        [
            "[fn] after",
            "kubelambda local: function logs no longer go to files: "
            "[Errno 28] No space left on device",
        ]
    )
    assert "write [fn] after" not in copy.events
    assert copy.events.count("close") == 1


def test_the_copy_goes_on_when_the_terminal_is_gone(pipe: tuple[int, int]) -> None:
    read, write = pipe
    os.close(read)  # the reader is gone: writing to the pipe fails (EPIPE)
    copy = Copy()
    output = Output(write, copy=copy)
    output("[fn] one")
    output("[fn] two")
    wait_for(lambda: "write [fn] two" in copy.events, timeout=5, what="the copy to get both lines")
    output.close()
    assert copy.closed.is_set()


def test_without_a_copy_the_output_is_as_before(pipe: tuple[int, int]) -> None:
    read, write = pipe
    output = Output(write)
    output("plain")
    assert _read_lines(read, 1) == ["plain"]
    output.close()


def test_a_record_of_several_lines_is_indented_on_the_terminal_and_one_line_in_the_copy(
    pipe: tuple[int, int],
) -> None:
    read, write = pipe
    copy = Copy()
    output = Output(write, copy=copy)
    output("[fn] [ERROR] ValueError: no luck\rTraceback (most recent call last):\r\xa0\xa0File")
    output("[fn] next")
    written = b""
    deadline = time.monotonic() + 10
    while not written.endswith(b"[fn] next\n") and time.monotonic() < deadline:
        if select.select([read], [], [], 0.1)[0]:
            written += os.read(read, 65536)
    assert written.decode().split("\n")[:-1] == [
        "[fn] [ERROR] ValueError: no luck",
        "    Traceback (most recent call last):",
        "    \xa0\xa0File",
        "[fn] next",
    ]
    output.close()
    assert [event for event in copy.events if event.startswith("write ")] == [
        "write [fn] [ERROR] ValueError: no luck\rTraceback (most recent call last):\r\xa0\xa0File",
        "write [fn] next",
    ]


def test_lines_that_come_together_go_out_in_one_write(
    pipe: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    read, write = pipe
    writes: list[int] = []
    real_write = os.write

    def counted(fd: int, data: bytes) -> int:
        writes.append(len(data))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", counted)
    output = Output(write)
    for n in range(300):  # an invocation prints three: a hundred invocations' worth
        output(f"[fn] line {n}")
    assert _read_lines(read, 300) == [f"[fn] line {n}" for n in range(300)]
    output.close()
    # Gathered: a write per line would be 300 system calls, and as many wake-ups of the writer.
    assert len(writes) <= 3, writes
