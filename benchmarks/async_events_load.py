"""Load for benchmarks/async_events.py: Invoke API requests (Event or RequestResponse) sent in a
closed loop over raw HTTP/1.1 connections, and the count of events the function handled (the
files it creates)."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

# The closed loop below speaks HTTP/1.1 with the same parser as loadgen's open loop.
from loadgen import _Connection

INVOKE_PATH = "/2015-03-31/functions/noop/invocations"


def invoke_request(port: int, *, tag: str, event: bool) -> bytes:
    """An Invoke API request (Event or RequestResponse) whose event names the tag's folder."""
    body = json.dumps({"tag": tag}).encode()
    kind = "Event" if event else "RequestResponse"
    return (
        f"POST {INVOKE_PATH} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n"
        f"x-amz-invocation-type: {kind}\r\n\r\n"
    ).encode() + body


@dataclass
class ClosedRun:
    """What a closed-loop run saw: answers by status, requests without one, and the wall-clock
    times of the first and last answers with the `expected` status."""

    expected: int
    sent: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    unanswered: int = 0
    first: float = 0.0
    last: float = 0.0
    started: float = 0.0
    ended: float = 0.0

    @property
    def ok(self) -> int:
        return self.statuses[self.expected]

    def failures(self) -> str:
        """Answers other than the expected one, and requests without an answer, by status."""
        bad = {s: n for s, n in sorted(self.statuses.items()) if s != self.expected}
        if self.unanswered:
            bad[0] = self.unanswered
        return ", ".join(f"{s or 'no answer'}: {n}" for s, n in bad.items()) or "none"


async def closed_loop(
    port: int,
    request: bytes,
    *,
    expected: int,
    connections: int,
    count: int | None = None,
    seconds: float | None = None,
) -> ClosedRun:
    """`connections` clients, each sending `request` again as soon as the last is answered,
    until `count` are sent (or `seconds` pass); a connection the server closed is replaced."""
    loop = asyncio.get_running_loop()
    run = ClosedRun(expected=expected, started=time.time())
    deadline = time.monotonic() + (seconds or 1e9)

    async def client() -> None:
        conn: _Connection | None = None
        while (run.sent < count) if count is not None else (time.monotonic() < deadline):
            if conn is None or conn.transport is None or conn.transport.is_closing():
                try:
                    _, conn = await loop.create_connection(_Connection, "127.0.0.1", port)
                except OSError:
                    run.unanswered += 1
                    await asyncio.sleep(0.1)  # the server is out of descriptors: back off
                    continue
            run.sent += 1
            conn.waiter = loop.create_future()
            assert conn.transport is not None
            conn.transport.write(request)
            try:
                status = await asyncio.wait_for(conn.waiter, 60)
            except (ConnectionError, TimeoutError):
                run.unanswered += 1
                conn.transport.close()
                continue
            run.statuses[status] += 1
            if status == expected:
                now = time.time()
                run.first = run.first or now
                run.last = now
        if conn is not None and conn.transport is not None:
            conn.transport.close()

    await asyncio.gather(*(client() for _ in range(connections)))
    run.ended = time.time()
    return run


def refused(run: ClosedRun, what: str) -> None:
    """Print the answers that were not the expected one; stop if none was."""
    if run.failures() == "none":
        return
    message = f"{what}: {run.ok} answered {run.expected}; not: {run.failures()}"
    if not run.ok:
        raise SystemExit(f"nothing to measure: {message}")
    print(f"  !! {message}", flush=True)


def span(start: float, end: float) -> float:
    """Seconds from `start` to `end`, never zero (one answer alone spans no time)."""
    return max(end - start, 1e-3)


def last_handled(folder: Path) -> float:
    """When the last event recorded under `folder` was handled (wall clock)."""
    with os.scandir(folder) as entries:
        return max((entry.stat().st_mtime for entry in entries), default=0.0)


def wait_handled(folder: Path, expected: int, *, stall: float = 30.0) -> tuple[int, float]:
    """Wait until `expected` events are handled, or none more is for `stall` seconds; how many
    were, and when the last one was. Only counts while waiting: stat()ing thousands of files
    ten times a second would take CPU from what is measured."""
    seen, progress = -1, time.monotonic()
    while True:
        count = len(os.listdir(folder))
        if count >= expected:
            break
        if count != seen:
            seen, progress = count, time.monotonic()
        elif time.monotonic() - progress > stall:
            print(f"  !! {folder.name}: {count} of {expected} handled, none more for {stall:.0f} s")
            break
        time.sleep(0.1)
    return count, last_handled(folder)
