"""Lambda's error documents: what a failed invocation answers, in the shape Lambda uses.

The worker turns handler exceptions and handler-loading faults into these; the server
builds the ones only it can see (timeouts, crashes, busy, bad requests).
"""

from __future__ import annotations

import os
import signal
import traceback
from types import TracebackType
from typing import Any

# Frames from this package (kubelambda_runtime/, above wire/) are the runtime's own, not the
# user's: a stack trace starts at the first frame outside it, as Lambda's traces start in
# user code.
_RUNTIME_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep

IMPORT_MODULE_ERROR = "Runtime.ImportModuleError"
HANDLER_NOT_FOUND = "Runtime.HandlerNotFound"
USER_CODE_SYNTAX_ERROR = "Runtime.UserCodeSyntaxError"
MALFORMED_HANDLER_NAME = "Runtime.MalformedHandlerName"
BUILT_IN_MODULE_CONFLICT = "Runtime.BuiltInModuleConflict"
MARSHAL_ERROR = "Runtime.MarshalError"
EXIT_ERROR = "Runtime.ExitError"
TIMED_OUT = "Sandbox.Timedout"


class Fault(Exception):
    """A failure of the runtime itself (not of the handler), with Lambda's error type."""

    def __init__(self, error_type: str, message: str, stack: list[str] | None = None) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.stack = stack or []

    def document(self, request_id: str | None) -> dict[str, Any]:
        return error_document(
            message=self.message,
            error_type=self.error_type,
            request_id=request_id,
            stack=self.stack,
        )


def error_document(
    *, message: str, error_type: str, request_id: str | None, stack: list[str]
) -> dict[str, Any]:
    """The body Lambda answers for a function error."""
    doc: dict[str, Any] = {"errorMessage": message, "errorType": error_type}
    if request_id is not None:
        doc["requestId"] = request_id
    doc["stackTrace"] = stack
    return doc


def user_stack(tb: TracebackType | None) -> list[str]:
    """The traceback as Lambda formats it: one string per frame, from the first user frame."""
    frames = traceback.extract_tb(tb)
    for index, frame in enumerate(frames):
        if not frame.filename.startswith(_RUNTIME_DIR):
            return traceback.format_list(frames[index:])
    return []


def exception_document(exc: BaseException, request_id: str | None) -> dict[str, Any]:
    """A handler exception as Lambda reports it: the class name, ``str(exc)`` and the trace."""
    return error_document(
        message=str(exc),
        error_type=type(exc).__name__,
        request_id=request_id,
        stack=user_stack(exc.__traceback__),
    )


def timeout_document(*, request_id: str, timeout_seconds: float) -> dict[str, Any]:
    return error_document(
        message=(
            f"RequestId: {request_id} Error: Task timed out after {timeout_seconds:.2f} seconds"
        ),
        error_type=TIMED_OUT,
        request_id=request_id,
        stack=[],
    )


def exit_reason(returncode: int | None) -> str | None:
    """How Lambda words a runtime's exit: ``exit status 1``, ``signal: killed``…; None for a
    runtime that exited successfully (status 0) or whose status is unknown."""
    if returncode is None or returncode == 0:
        return None
    if returncode > 0:
        return f"exit status {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        return f"signal: {-returncode}"
    words = {
        "SIGKILL": "killed",
        "SIGSEGV": "segmentation fault",
        "SIGABRT": "aborted",
        "SIGBUS": "bus error",
        "SIGTERM": "terminated",
        "SIGFPE": "floating point exception",
        "SIGILL": "illegal instruction",
    }
    return f"signal: {words.get(name, name.lower())}"


def exit_error(reason: str | None) -> str:
    """The error of a runtime that exited: with a reason, or Lambda's words for one that
    gave none (exit status 0; the emulator's internal/lambda/rapid/handlers.go)."""
    if reason is None:
        return "Runtime exited without providing a reason"
    return f"Runtime exited with error: {reason}"


def exit_document(*, request_id: str, reason: str | None) -> dict[str, Any]:
    return error_document(
        message=f"RequestId: {request_id} Error: {exit_error(reason)}",
        error_type=EXIT_ERROR,
        request_id=request_id,
        stack=[],
    )


def api_error(error_type: str, message: str) -> dict[str, str]:
    """A request the runtime refused before any handler ran (bad body, busy, unknown path)."""
    return {"errorType": error_type, "errorMessage": message}
