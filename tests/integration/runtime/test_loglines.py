"""The runtime's log lines as Lambda writes them: START for every invocation (one that times out
or crashes before printing included), printed lines unprefixed, a traceback one record, and an
init failure's error with INIT_REPORT and the invocation's START/END/REPORT."""

from __future__ import annotations

import re

import pytest

from support.waiting import wait_for

# Two ways in: a keep-alive connection is handed to the worker (it answers directly); a request
# on a connection that closes goes to the worker in a frame.
WAYS = {"handed-over": {}, "in-frames": {"Connection": "close"}}


def _lines_until(fn, pattern: str) -> list[str]:
    """The runtime's log lines, once one of them matches ``pattern``."""

    def found() -> list[str] | None:
        # Bytes, split at "\n" only: read as text or by splitlines(), a record's "\r" would
        # break it up.
        lines = fn.log_path.read_bytes().decode(errors="replace").split("\n")
        return lines if any(re.search(pattern, line) for line in lines) else None

    return wait_for(found, timeout=10, what=f"a log line matching {pattern!r}")


def _of(lines: list[str], request_id: str) -> list[str]:
    """The lines naming ``request_id``."""
    return [line for line in lines if request_id in line]


@pytest.mark.parametrize("way", WAYS)
def test_an_invocation_that_times_out_before_printing_has_its_start_line(runtime, way):
    code = "import time\ndef handler(event, context):\n    time.sleep(60)\n"
    fn = runtime({"app.py": code}, env={"AWS_LAMBDA_FUNCTION_TIMEOUT": "1"})
    answer = fn.invoke("{}", **{"Lambda-Runtime-Aws-Request-Id": "quiet-1", **WAYS[way]})
    assert answer.json()["errorType"] == "Sandbox.Timedout"
    lines = _of(_lines_until(fn, r"^REPORT RequestId: quiet-1\t"), "quiet-1")
    assert len(lines) == 4, lines
    assert lines[0] == "START RequestId: quiet-1 Version: $LATEST"
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z quiet-1 Task timed out after 1\.00 seconds",
        lines[1],
    ), lines[1]
    assert lines[2] == "END RequestId: quiet-1"
    report = lines[3].split("\t")
    assert report[0] == "REPORT RequestId: quiet-1"
    assert report[-1] == "Status: timeout"


@pytest.mark.parametrize("way", WAYS)
def test_an_invocation_that_crashes_before_printing_has_its_start_line(runtime, way):
    fn = runtime({"app.py": "import os\ndef handler(event, context):\n    os._exit(4)\n"})
    answer = fn.invoke("{}", **{"Lambda-Runtime-Aws-Request-Id": "gone-1", **WAYS[way]})
    assert answer.json()["errorType"] == "Runtime.ExitError"
    logged = _lines_until(fn, r"^REPORT RequestId: gone-1\t")
    start = logged.index("START RequestId: gone-1 Version: $LATEST")
    lines = logged[start : start + 5]
    assert lines[:4] == [
        "START RequestId: gone-1 Version: $LATEST",
        "RequestId: gone-1 Error: Runtime exited with error: exit status 4",
        "Runtime.ExitError",
        "END RequestId: gone-1",
    ]
    report = lines[4].split("\t")
    assert report[0] == "REPORT RequestId: gone-1"
    assert report[-2:] == ["Status: error", "Error Type: Runtime.ExitError"]
    # The environment is replaced, and the next invocation has its lines too.
    assert fn.invoke("{}", **{"Lambda-Runtime-Aws-Request-Id": "gone-2"}).status_code == 200
    assert _of(_lines_until(fn, r"^REPORT RequestId: gone-2\t"), "gone-2")[0].startswith("START")


def test_printed_lines_are_unprefixed_and_each_invocation_starts_once(runtime):
    code = """
    import sys
    def handler(event, context):
        print("to stdout")
        print("to stderr", file=sys.stderr)
        sys.stdout.write("no newline")
        return 1
    """
    fn = runtime({"app.py": code})
    fn.invoke("{}", **{"Lambda-Runtime-Aws-Request-Id": "plain-1"})
    lines = _lines_until(fn, r"^REPORT RequestId: plain-1\t")
    start = lines.index("START RequestId: plain-1 Version: $LATEST")
    assert lines[start + 1 : start + 5] == [
        "to stdout",
        "to stderr",
        "no newline",
        "END RequestId: plain-1",
    ]
    assert sum(line.startswith("START RequestId: plain-1 ") for line in lines) == 1


def test_a_logged_traceback_is_one_record(runtime):
    code = """
    import logging
    def handler(event, context):
        try:
            raise KeyError("gone")
        except KeyError:
            logging.exception("lookup failed")
        return 1
    """
    fn = runtime({"app.py": code})
    fn.invoke("{}", **{"Lambda-Runtime-Aws-Request-Id": "logged-1"})
    lines = _lines_until(fn, r"^REPORT RequestId: logged-1\t")
    start = lines.index("START RequestId: logged-1 Version: $LATEST")
    assert lines[start + 2] == "END RequestId: logged-1"  # one line between them
    record = lines[start + 1].split("\r")
    assert record[0].startswith("[ERROR]\t") and record[0].endswith("\tlogged-1\tlookup failed")
    assert record[1] == "Traceback (most recent call last):"
    assert record[-1] == "KeyError: 'gone'"


def test_a_handler_s_unhandled_error_is_one_record(runtime):
    code = "def handler(event, context):\n    raise ValueError('no luck')\n"
    fn = runtime({"app.py": code})
    fn.invoke("{}", **{"Lambda-Runtime-Aws-Request-Id": "raised-1"})
    lines = _lines_until(fn, r"^REPORT RequestId: raised-1\t")
    start = lines.index("START RequestId: raised-1 Version: $LATEST")
    assert lines[start + 2] == "END RequestId: raised-1"
    record = lines[start + 1].split("\r")
    assert record[:2] == ["[ERROR] ValueError: no luck", "Traceback (most recent call last):"]
    assert record[2].startswith('\u00a0\u00a0File "')


@pytest.mark.parametrize(
    ("source", "error_type"),
    [
        ("import no_such_module\n", "Runtime.ImportModuleError"),
        # An exception of the module's own: Lambda reports error types outside Runtime.* and
        # Function.* as Runtime.Unknown.
        ("raise RuntimeError('bad config')\n", "Runtime.Unknown"),
        ("import os\nos._exit(3)\n", "Runtime.ExitError"),
    ],
    ids=["import-error", "module-raises", "module-exits"],
)
def test_an_init_failure_logs_init_report_and_the_invocation_s_lines(runtime, source, error_type):
    fn = runtime({"app.py": source})
    first = _lines_until(fn, r"^INIT_REPORT ")
    init_report = next(line for line in first if line.startswith("INIT_REPORT "))
    parts = init_report.split("\t")
    assert re.fullmatch(r"INIT_REPORT Init Duration: \d+\.\d\d ms", parts[0]), parts
    assert parts[1:] == ["Phase: init", "Status: error", f"Error Type: {error_type}"]

    answer = fn.invoke("{}", **{"Lambda-Runtime-Aws-Request-Id": "init-1"})
    assert answer.headers["x-amz-function-error"] == "Unhandled"
    lines = _lines_until(fn, r"^REPORT RequestId: init-1\t")
    retried = [line for line in lines if line.startswith("INIT_REPORT ")]
    assert len(retried) == 2, lines  # init runs again for the invocation, as on Lambda
    assert retried[1].split("\t")[1:] == [
        "Phase: invoke",
        "Status: error",
        f"Error Type: {error_type}",
    ]
    tail = lines[lines.index(retried[1]) + 1 :]
    assert tail[0] == "START RequestId: init-1 Version: $LATEST"
    end = tail.index("END RequestId: init-1")
    if error_type == "Runtime.ExitError":  # the platform's words for the exit, as on Lambda
        assert tail[1:end] == [
            "RequestId: init-1 Error: Runtime exited with error: exit status 3",
            "Runtime.ExitError",
        ]
    else:  # the runtime logged the error itself, before INIT_REPORT
        assert end == 1
    report = tail[end + 1].split("\t")
    assert report[0] == "REPORT RequestId: init-1"
    assert report[-2:] == ["Status: error", f"Error Type: {error_type}"]


def test_an_init_failure_s_error_is_logged_before_its_init_report(runtime):
    fn = runtime({"app.py": "import no_such_module\n"})
    lines = _lines_until(fn, r"^INIT_REPORT ")
    error = next(line for line in lines if line.startswith("[ERROR] "))
    assert error.startswith(
        "[ERROR] Runtime.ImportModuleError: Unable to import module 'app': "
        "No module named 'no_such_module'"
    )
    assert lines.index(error) < next(
        index for index, line in enumerate(lines) if line.startswith("INIT_REPORT ")
    )
