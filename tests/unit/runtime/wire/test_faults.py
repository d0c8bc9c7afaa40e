"""Error documents in Lambda's shapes."""

from __future__ import annotations

import signal

import pytest

from kubelambda_runtime.wire import faults


def raise_in_user_code() -> None:
    raise KeyError("missing")


def test_exception_document_has_lambdas_four_fields():
    try:
        raise_in_user_code()
    except KeyError as exc:
        document = faults.exception_document(exc, "r-1")
    assert list(document) == ["errorMessage", "errorType", "requestId", "stackTrace"]
    assert document["errorType"] == "KeyError"
    assert document["errorMessage"] == "'missing'"  # str(exc), as Lambda reports it
    assert document["requestId"] == "r-1"
    assert document["stackTrace"][-1].strip().endswith('raise KeyError("missing")')


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (0, None),  # Lambda: "Runtime exited without providing a reason"
        (3, "exit status 3"),
        (-signal.SIGKILL, "signal: killed"),
        (-signal.SIGSEGV, "signal: segmentation fault"),
        (-signal.SIGUSR1, "signal: sigusr1"),
        (None, None),
    ],
)
def test_exit_reasons_read_like_lambdas(code, reason):
    assert faults.exit_reason(code) == reason


def test_timeout_document():
    document = faults.timeout_document(request_id="r", timeout_seconds=3)
    assert document["errorType"] == "Sandbox.Timedout"
    assert document["errorMessage"] == "RequestId: r Error: Task timed out after 3.00 seconds"
