"""Relays a process's output to local mode's, one prefixed line at a time: each instance's
runtime (instances.py) and the runtime's zygote (zygote.py).

A line longer than MAX_LINE_BYTES is cut (and said so) rather than stop the relay, which would
leave the process blocked on a full pipe.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

# A process's output line longer than this is cut in local mode's output.
MAX_LINE_BYTES = 64 * 1024
RELAY_CHUNK_BYTES = 64 * 1024


async def relay_lines(
    stream: asyncio.StreamReader, output: Callable[[str], None], *, prefix: str
) -> None:
    """Relay ``stream``'s lines to ``output`` until its end, each as ``prefix`` + the line."""

    def line(data: bytes) -> str:
        return f"{prefix}{data.decode(errors='replace').rstrip()}"

    pending = b""
    cutting = False  # inside a line already cut: drop bytes until its end
    while chunk := await stream.read(RELAY_CHUNK_BYTES):
        *lines, pending = (pending + chunk).split(b"\n")
        for whole in lines:
            if not cutting:
                output(line(whole))
            cutting = False
        if len(pending) > MAX_LINE_BYTES and not cutting:
            output(line(pending[:MAX_LINE_BYTES]) + " [line cut: over 64 KiB]")
            cutting = True
        if cutting:
            pending = b""
    if pending and not cutting:
        output(line(pending))


async def pipe_reader(fd: int) -> tuple[asyncio.StreamReader, asyncio.BaseTransport]:
    """A stream over the read end ``fd`` of a pipe (which it takes over), and its transport:
    closed by itself at the pipe's end, or by the caller before."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=MAX_LINE_BYTES)
    try:
        pipe = os.fdopen(fd, "rb", buffering=0)
    except OSError:
        os.close(fd)
        raise
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
    return reader, transport
