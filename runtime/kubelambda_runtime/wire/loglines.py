"""The lines Lambda writes around each invocation (START, END, REPORT) and after a failed init
(INIT_REPORT), in its format.

A worker writes START, END and REPORT for every invocation it runs (worker/environment.py);
the server writes them for one it ended itself, at a timeout or a crash (server/endings.py),
and INIT_REPORT, START, END and REPORT when init failed (server/slot.py, server/pool.py).
"""

from __future__ import annotations

import math
import os
import re
import time

# Lambda reports an error type in INIT_REPORT and REPORT only when it names a runtime or a
# function error; any other (a module's own exception) is Runtime.Unknown (the Runtime
# Interface Emulator's GetValidRuntimeOrFunctionErrorType).
_REPORTED_TYPE = re.compile(r"(Runtime|Function)\.[A-Z][a-zA-Z]+")
UNKNOWN_ERROR = "Runtime.Unknown"


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
    error_type: str | None = None,
) -> str:
    """``status`` is ``timeout`` or ``error`` for an invocation the runtime ended or that init
    failed for (none for one the handler finished, an exception included), as Lambda writes."""
    parts = [
        f"REPORT RequestId: {request_id}",
        f"Duration: {duration_ms:.2f} ms",
        f"Billed Duration: {billed_ms(duration_ms)} ms",
        f"Memory Size: {memory_mb} MB",
    ]
    if max_memory_mb is not None:
        parts.append(f"Max Memory Used: {max_memory_mb} MB")
    if init_ms is not None:
        parts.append(f"Init Duration: {init_ms:.2f} ms")
    if status is not None:
        parts.append(f"Status: {status}")
    if error_type is not None:
        parts.append(f"Error Type: {reported_type(error_type)}")
    return "\t".join(parts)


def billed_ms(duration_ms: float) -> int:
    """Lambda's billed duration: rounded up to the next millisecond, at least 1 ms."""
    return max(math.ceil(duration_ms), 1)


def init_report_line(
    *, init_ms: float, phase: str, status: str, error_type: str | None = None
) -> str:
    """Lambda's line for an init that failed: ``phase`` is ``init`` (the environment's own
    start) or ``invoke`` (init run again for an invocation), ``status`` ``error`` or
    ``timeout``."""
    parts = [f"INIT_REPORT Init Duration: {init_ms:.2f} ms", f"Phase: {phase}", f"Status: {status}"]
    if error_type is not None:
        parts.append(f"Error Type: {reported_type(error_type)}")
    return "\t".join(parts)


def timed_out_line(request_id: str, timeout_seconds: float, *, now: float) -> str:
    """``2024-03-04T17:22:38.033Z <request id> Task timed out after 3.00 seconds``."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
    millis = int(now * 1000) % 1000
    return f"{stamp}.{millis:03d}Z {request_id} Task timed out after {timeout_seconds:.2f} seconds"


def reported_type(error_type: str) -> str:
    return error_type if _REPORTED_TYPE.fullmatch(error_type) else UNKNOWN_ERROR


def emit(*lines: str) -> str:
    """Write lines of the runtime's own to its standard output, in one write; the text."""
    text = "".join(line + "\n" for line in lines)
    os.write(1, text.encode("utf-8", "replace"))
    return text
