"""The lines Lambda writes around an invocation, in its format."""

from __future__ import annotations

import pytest

from kubelambda_runtime.wire import loglines


def test_report_line():
    line = loglines.report_line(
        request_id="r", duration_ms=12.345, memory_mb=128, max_memory_mb=40, init_ms=5.5
    )
    assert line.split("\t") == [
        "REPORT RequestId: r",
        "Duration: 12.35 ms",
        "Billed Duration: 13 ms",
        "Memory Size: 128 MB",
        "Max Memory Used: 40 MB",
        "Init Duration: 5.50 ms",
    ]


def test_report_line_of_an_invocation_that_failed():
    line = loglines.report_line(
        request_id="r",
        duration_ms=1000.5,
        memory_mb=128,
        max_memory_mb=None,
        init_ms=None,
        status="error",
        error_type="Runtime.ExitError",
    )
    assert line.split("\t")[-2:] == ["Status: error", "Error Type: Runtime.ExitError"]


@pytest.mark.parametrize(
    ("status", "error_type", "expected"),
    [
        (
            "error",
            "Runtime.ImportModuleError",
            "INIT_REPORT Init Duration: 144.81 ms\tPhase: init\tStatus: error"
            "\tError Type: Runtime.ImportModuleError",
        ),
        # A module's own exception: Lambda reports types outside Runtime.* and Function.*
        # as Runtime.Unknown.
        (
            "error",
            "RuntimeError",
            "INIT_REPORT Init Duration: 144.81 ms\tPhase: init\tStatus: error"
            "\tError Type: Runtime.Unknown",
        ),
        ("timeout", None, "INIT_REPORT Init Duration: 144.81 ms\tPhase: init\tStatus: timeout"),
    ],
)
def test_init_report_line(status, error_type, expected):
    line = loglines.init_report_line(
        init_ms=144.814, phase="init", status=status, error_type=error_type
    )
    assert line == expected


@pytest.mark.parametrize(
    ("error_type", "reported"),
    [
        ("Runtime.ExitError", "Runtime.ExitError"),
        ("Function.ResponseSizeTooLarge", "Function.ResponseSizeTooLarge"),
        ("ValueError", "Runtime.Unknown"),
        ("Sandbox.Timedout", "Runtime.Unknown"),
        ("", "Runtime.Unknown"),
    ],
)
def test_reported_type(error_type, reported):
    assert loglines.reported_type(error_type) == reported


def test_timed_out_line_has_milliseconds():
    now = 1709572958.0339  # 2024-03-04T17:22:38.033Z
    assert loglines.timed_out_line("r", 3, now=now) == (
        "2024-03-04T17:22:38.033Z r Task timed out after 3.00 seconds"
    )
