"""A light client beside burst.py's overflow: one request at a time, each on a new connection (as
the overflow's clients reconnect after each 503, which closes its connection), one every
`every` seconds; prints [status, latency ms, seconds since it began] per request as JSON:
{"requests": [...], "healthz": [...]}.

In a process of its own, asleep between requests, so that what it measures is the gateway's
answer and the kernel's queues in front of it, not the lateness of the load generator the
overflow keeps busy on the same cores (its figures are burst.py's). Given the gateway's admin
port, each request is followed by a GET /healthz there, on a new connection too: the same
process and event loop answering the cheapest request it has, from a listener the overflow does
not queue on, so the two side by side say what the 503s waited for beyond what every answer of
that process waited for then (its share of the machine).

    python burst_probe.py PORT REQUEST_HEX SECONDS EVERY [ADMIN_PORT]
"""

from __future__ import annotations

import json
import re
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support.raw_http import read_answer


def ask(port: int, request: bytes) -> tuple[int, float]:
    """The status of one request on a new connection (0: no answer) and its latency (ms)."""
    started = time.perf_counter()
    try:
        client = socket.create_connection(("127.0.0.1", port), timeout=30)
        client.sendall(request)
    except OSError:
        return 0, (time.perf_counter() - started) * 1000
    answer = read_answer(client, time.monotonic() + 30)
    status = re.match(rb"HTTP/1\.1 (\d+) ", answer)
    return (int(status.group(1)) if status else 0), (time.perf_counter() - started) * 1000


def main() -> None:
    port, request, seconds, every, *admin = sys.argv[1:]
    healthz = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    began = time.monotonic()
    end = began + float(seconds)
    due = began
    answers: dict[str, list[tuple[int, float, float]]] = {"requests": [], "healthz": []}
    while due < end:
        time.sleep(max(due - time.monotonic(), 0.0))
        at = round(due - began, 3)
        answers["requests"].append((*ask(int(port), bytes.fromhex(request)), at))
        if admin:
            answers["healthz"].append((*ask(int(admin[0]), healthz), at))
        due += float(every)
    print(json.dumps(answers))


if __name__ == "__main__":
    main()
