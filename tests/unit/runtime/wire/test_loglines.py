"""The lines Lambda writes around an invocation, in its format."""

from __future__ import annotations

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
