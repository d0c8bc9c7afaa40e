"""What the runtime logs for invocations it ends itself, as Lambda does: a timeout, a crash, an
init failure, with the START line when the worker never began the invocation."""

from __future__ import annotations

from typing import Any

import pytest

from kubelambda_runtime.server.endings import Endings
from kubelambda_runtime.wire import config


def _endings() -> Endings:
    settings = config.Settings(handler="app.handler", task_root="/var/task", timeout_seconds=3)
    unused: Any = None  # the log lines need neither the board nor the hand-over
    return Endings(settings, board=unused, handover=unused, count=unused, restart=unused)


def _fields(line: str) -> list[str]:
    return line.split("\t")


@pytest.mark.parametrize("opened", [True, False], ids=["worker-began-it", "worker-never-began"])
def test_a_timeout_logs_its_lines_and_start_only_when_the_worker_never_began(capfd, opened):
    document = _endings().timed_out("r1", 3.0012, opened=opened)
    lines = capfd.readouterr().out.split("\n")[:-1]
    if not opened:
        assert lines.pop(0) == "START RequestId: r1 Version: $LATEST"
    assert lines[0].endswith("Z r1 Task timed out after 3.00 seconds")
    assert lines[1] == "END RequestId: r1"
    assert _fields(lines[2])[0] == "REPORT RequestId: r1"
    assert _fields(lines[2])[1] == "Duration: 3001.20 ms"
    assert _fields(lines[2])[-1] == "Status: timeout"
    assert len(lines) == 3
    assert document["errorType"] == "Sandbox.Timedout"


@pytest.mark.parametrize(
    ("reason", "message", "error_type"),
    [
        ("exit status 4", "Runtime exited with error: exit status 4", "Runtime.ExitError"),
        (None, "Runtime exited without providing a reason", "Runtime.ExitError"),
        ("out of memory", "Runtime exited with error: out of memory", "Runtime.OutOfMemory"),
    ],
)
def test_a_crash_logs_the_exit_and_its_error_type(capfd, reason, message, error_type):
    _endings().crashed("r2", 0.5, reason, opened=False)
    lines = capfd.readouterr().out.split("\n")[:-1]
    assert lines[:4] == [
        "START RequestId: r2 Version: $LATEST",
        f"RequestId: r2 Error: {message}",
        "Runtime.ExitError",
        "END RequestId: r2",
    ]
    assert _fields(lines[4])[-2:] == ["Status: error", f"Error Type: {error_type}"]


@pytest.mark.parametrize(
    ("document", "between", "ending"),
    [
        (
            {"errorType": "Runtime.ImportModuleError", "errorMessage": "Unable to import"},
            [],
            ["Status: error", "Error Type: Runtime.ImportModuleError"],
        ),
        (
            {"errorType": "ValueError", "errorMessage": "bad config"},
            [],
            ["Status: error", "Error Type: Runtime.Unknown"],
        ),
        (
            {"errorType": "Runtime.ExitError", "errorMessage": "Runtime exited with error: x"},
            ["RequestId: r3 Error: Runtime exited with error: x", "Runtime.ExitError"],
            ["Status: error", "Error Type: Runtime.ExitError"],
        ),
        (
            {"errorType": "Sandbox.Timedout", "errorMessage": "Init timed out"},
            [],
            ["Memory Size: 128 MB", "Status: timeout"],
        ),
    ],
    ids=["fault", "module-raised", "exited", "timed-out"],
)
def test_an_invocation_init_failed_for_logs_start_end_report(capfd, document, between, ending):
    logged = _endings().init_failed("r3", 0.25, document)
    out = capfd.readouterr().out
    assert logged == out
    lines = out.split("\n")[:-1]
    assert lines == [
        "START RequestId: r3 Version: $LATEST",
        *between,
        "END RequestId: r3",
        lines[-1],
    ]
    assert _fields(lines[-1])[0] == "REPORT RequestId: r3"
    assert _fields(lines[-1])[1] == "Duration: 250.00 ms"
    assert _fields(lines[-1])[-2:] == ending
