"""The lines Lambda writes around each invocation (START, END, REPORT), in its format.

A worker writes them for every invocation it runs (worker/environment.py); the server writes
END and REPORT for one it ended itself, at a timeout or a crash (server/endings.py).
"""

from __future__ import annotations

import math


def start_line(request_id: str, version: str) -> str:
    return f"START RequestId: {request_id} Version: {version}"


def end_line(request_id: str) -> str:
    return f"END RequestId: {request_id}"


def report_line(
    *,
    request_id: str,
    duration_ms: float,
    memory_mb: int,
    max_memory_mb: int | None,
    init_ms: float | None,
    status: str | None = None,
) -> str:
    parts = [
        f"REPORT RequestId: {request_id}",
        f"Duration: {duration_ms:.2f} ms",
        f"Billed Duration: {max(math.ceil(duration_ms), 1)} ms",
        f"Memory Size: {memory_mb} MB",
    ]
    if max_memory_mb is not None:
        parts.append(f"Max Memory Used: {max_memory_mb} MB")
    if init_ms is not None:
        parts.append(f"Init Duration: {init_ms:.2f} ms")
    if status is not None:
        parts.append(f"Status: {status}")
    return "\t".join(parts)
