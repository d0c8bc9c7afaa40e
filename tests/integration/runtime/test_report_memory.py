"""REPORT lines the server writes itself (an invocation that timed out, crashed, or was answered
with an init error) carry ``Max Memory Used``, as Lambda's always do: the memory high-water mark
of the environment's worker, as the worker measures its own."""

from __future__ import annotations

import re
import stat
import sys

import pytest

from support.runtime import start_runtime
from support.waiting import wait_for

# Two ways in: a keep-alive connection is handed to the worker (the deadline watch stops it);
# a request on a connection that closes goes to the worker in a frame (the pool stops it).
WAYS = {"handed-over": {}, "in-frames": {"Connection": "close"}}
HOLD_MB = 64
HOLD = f"held = b'x' * ({HOLD_MB} << 20)  # written, so resident\n"


def _report(fn, request_id: str) -> dict[str, str]:
    def found() -> str | None:
        for line in fn.log_path.read_bytes().decode(errors="replace").split("\n"):
            if line.startswith(f"REPORT RequestId: {request_id}\t"):
                return line
        return None

    line = wait_for(found, timeout=10, what=f"the REPORT line of {request_id}")
    fields = dict(part.split(": ", 1) for part in line.split("\t"))
    return fields


def _megabytes(value: str) -> int:
    match = re.fullmatch(r"(\d+) MB", value)
    assert match, value
    return int(match.group(1))


@pytest.mark.parametrize("way", WAYS)
def test_a_timed_out_invocation_reports_its_max_memory_used(runtime, way):
    code = "import time\ndef handler(event, context):\n    " + HOLD + "    time.sleep(60)\n"
    fn = runtime({"app.py": code}, env={"AWS_LAMBDA_FUNCTION_TIMEOUT": "1"})
    answer = fn.invoke("{}", **{"Lambda-Runtime-Aws-Request-Id": "mem-t", **WAYS[way]})
    assert answer.json()["errorType"] == "Sandbox.Timedout"
    report = _report(fn, "mem-t")
    assert report["Status"] == "timeout"
    assert HOLD_MB <= _megabytes(report["Max Memory Used"]) < 4 * HOLD_MB, report


@pytest.mark.parametrize("way", WAYS)
def test_a_crashed_invocation_reports_its_max_memory_used(runtime, way):
    code = "import os\ndef handler(event, context):\n    " + HOLD + "    os._exit(4)\n"
    fn = runtime({"app.py": code})
    answer = fn.invoke("{}", **{"Lambda-Runtime-Aws-Request-Id": "mem-c", **WAYS[way]})
    assert answer.json()["errorType"] == "Runtime.ExitError"
    report = _report(fn, "mem-c")
    assert report["Status"] == "error"
    assert HOLD_MB <= _megabytes(report["Max Memory Used"]) < 4 * HOLD_MB, report


def test_an_invocation_answered_with_an_init_error_reports_max_memory_used(runtime):
    fn = runtime({"app.py": HOLD + "import no_such_module\n"})
    answer = fn.invoke("{}", **{"Lambda-Runtime-Aws-Request-Id": "mem-i"})
    assert answer.json()["errorType"] == "Runtime.ImportModuleError"
    report = _report(fn, "mem-i")
    assert report["Error Type"] == "Runtime.ImportModuleError"
    assert HOLD_MB <= _megabytes(report["Max Memory Used"]) < 4 * HOLD_MB, report


# A custom runtime's bootstrap serving the Runtime API itself: it holds the memory, not the
# worker that serves it the API.
HOLDING_BOOTSTRAP = """#!{python}
import os, urllib.request
api = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2018-06-01/runtime/invocation/"
held = []
while True:
    with urllib.request.urlopen(api + "next") as event:
        request_id = event.headers["Lambda-Runtime-Aws-Request-Id"]
    held.append(b"x" * ({mb} << 20))
    answer = urllib.request.Request(api + request_id + "/response", data=b"1", method="POST")
    urllib.request.urlopen(answer).read()
"""


def test_a_custom_runtime_reports_its_bootstrap_s_memory(tmp_path):
    code = tmp_path / "custom"
    code.mkdir()
    bootstrap = code / "bootstrap"
    bootstrap.write_text(HOLDING_BOOTSTRAP.format(python=sys.executable, mb=HOLD_MB))
    bootstrap.chmod(bootstrap.stat().st_mode | stat.S_IXUSR)
    fn = start_runtime(
        code_dir=code, handler="bootstrap", env={"KUBELAMBDA_RUNTIME": "provided.al2023"}
    )
    try:
        answer = fn.invoke("{}", **{"Lambda-Runtime-Aws-Request-Id": "mem-b"})
        assert answer.json() == 1
        report = _report(fn, "mem-b")
        assert HOLD_MB <= _megabytes(report["Max Memory Used"]) < 4 * HOLD_MB, report
    finally:
        fn.stop()
