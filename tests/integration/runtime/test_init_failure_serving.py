"""A runtime whose init failed keeps serving, as Lambda does: /healthz answers 200 (so a
kubelet readiness probe lets the pod take invocations) with the init error in its body, and each
invocation is answered with the init error after init is tried again for it."""

from __future__ import annotations

import stat
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.runtime import RuntimeProcess, start_runtime
from support.waiting import wait_for

Start = Callable[..., RuntimeProcess]

# A custom runtime's bootstrap that reports an init error through the Runtime API and exits,
# as a runtime interface client does when the handler cannot be loaded.
INIT_ERROR_BOOTSTRAP = """#!{python}
import json, os, urllib.request
document = {{
    "errorMessage": "TABLE_NAME is not set",
    "errorType": "Runtime.ConfigError",
    "stackTrace": [],
}}
request = urllib.request.Request(
    "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2018-06-01/runtime/init/error",
    data=json.dumps(document).encode(),
    headers={{"Lambda-Runtime-Function-Error-Type": "Runtime.ConfigError"}},
    method="POST",
)
print("bootstrap: posting init error", flush=True)
urllib.request.urlopen(request).read()
"""


@pytest.fixture
def custom_script(tmp_path: Path) -> Iterator[Start]:
    """``custom_script(source)`` starts a provided.al2023 runtime whose bootstrap is ``source``."""
    started: list[RuntimeProcess] = []

    def start(source: str) -> RuntimeProcess:
        code = tmp_path / f"custom{len(started)}"
        code.mkdir()
        bootstrap = code / "bootstrap"
        bootstrap.write_text(source.format(python=sys.executable))
        bootstrap.chmod(bootstrap.stat().st_mode | stat.S_IXUSR)
        process = start_runtime(
            code_dir=code, handler="bootstrap", env={"KUBELAMBDA_RUNTIME": "provided.al2023"}
        )
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


def _health(fn: RuntimeProcess) -> tuple[int, dict[str, Any]]:
    answer = fn.client.get("/healthz")
    return answer.status_code, answer.json()


def _assert_init_error(answer: httpx.Response, request_id: str, error_type: str, message: str):
    assert answer.status_code == 200
    assert answer.headers["x-amz-function-error"] == "Unhandled"
    document = answer.json()
    assert document["errorType"] == error_type
    assert document["errorMessage"] == message
    assert document["requestId"] == request_id
    assert isinstance(document["stackTrace"], list)


def _log_lines(fn: RuntimeProcess, until: str) -> list[str]:
    def found() -> list[str] | None:
        lines = fn.log_path.read_bytes().decode(errors="replace").split("\n")
        return lines if any(line.startswith(until) for line in lines) else None

    return wait_for(found, timeout=10, what=f"a log line starting {until!r}")


def test_a_python_function_whose_init_failed_is_ready_and_answers_the_init_error(runtime):
    fn = runtime({"app.py": "import no_such_module\n"})
    status, health = _health(fn)
    assert status == 200, health  # a readiness probe lets the pod serve
    assert health["status"] == "init_failed"
    assert health["error"]["errorType"] == "Runtime.ImportModuleError"
    message = "Unable to import module 'app': No module named 'no_such_module'"
    for request_id in ("fail-1", "fail-2"):
        answer = fn.invoke("{}", **{"Lambda-Runtime-Aws-Request-Id": request_id})
        _assert_init_error(answer, request_id, "Runtime.ImportModuleError", message)
    assert _health(fn)[0] == 200
    lines = _log_lines(fn, "REPORT RequestId: fail-2\t")
    phases = [line.split("\t")[1] for line in lines if line.startswith("INIT_REPORT ")]
    assert phases == ["Phase: init", "Phase: invoke", "Phase: invoke"], lines
    assert "START RequestId: fail-1 Version: $LATEST" in lines
    assert "END RequestId: fail-1" in lines


def test_a_custom_runtime_that_posts_init_error_is_ready_and_answers_it(custom_script):
    fn = custom_script(INIT_ERROR_BOOTSTRAP)
    status, health = _health(fn)
    assert status == 200, health
    assert health["status"] == "init_failed"
    assert health["error"]["errorType"] == "Runtime.ConfigError"
    for request_id in ("cfg-1", "cfg-2"):
        answer = fn.invoke("{}", **{"Lambda-Runtime-Aws-Request-Id": request_id})
        _assert_init_error(answer, request_id, "Runtime.ConfigError", "TABLE_NAME is not set")
    lines = _log_lines(fn, "REPORT RequestId: cfg-2\t")
    reports = [line for line in lines if line.startswith("INIT_REPORT ")]
    assert [line.split("\t")[1:] for line in reports] == [
        [phase, "Status: error", "Error Type: Runtime.ConfigError"]
        for phase in ("Phase: init", "Phase: invoke", "Phase: invoke")
    ], lines
    assert sum("bootstrap: posting init error" in line for line in lines) == 3
    report = next(line for line in lines if line.startswith("REPORT RequestId: cfg-1\t"))
    assert report.split("\t")[-2:] == ["Status: error", "Error Type: Runtime.ConfigError"]


def test_health_stays_serving_while_init_is_tried_again_for_an_invocation(runtime, tmp_path):
    marks = tmp_path / "imports"
    source = f"""
        import time
        with open({str(marks)!r}, "a") as marks:
            marks.write("x")
        time.sleep(1.5)
        raise RuntimeError("still broken")
        """
    fn = runtime({"app.py": source})
    assert _health(fn)[0] == 200
    answers: list[httpx.Response] = []
    invoking = threading.Thread(target=lambda: answers.append(fn.invoke("{}")))
    invoking.start()
    try:
        wait_for(lambda: marks.read_text() == "xx", timeout=10, what="init tried again")
        status, health = _health(fn)  # the retried init is still sleeping
        assert status == 200, health
        assert health["status"] == "init_failed"
    finally:
        invoking.join(30)
    assert answers[0].json()["errorMessage"] == "still broken"


def test_health_stays_ready_while_a_crashed_worker_is_replaced(runtime, tmp_path):
    marks = tmp_path / "imports"
    source = f"""
        import os, time
        with open({str(marks)!r}, "a") as marks:
            marks.write("x")
        if os.path.getsize({str(marks)!r}) > 1:
            time.sleep(1.5)  # the replacement's init is slow

        def handler(event, context):
            os._exit(3)
        """
    fn = runtime({"app.py": source})
    assert fn.invoke("{}", Connection="close").json()["errorType"] == "Runtime.ExitError"
    wait_for(lambda: marks.read_text() == "xx", timeout=10, what="the replacement's init")
    status, health = _health(fn)
    assert (status, health) == (200, {"status": "ready"})  # invocations wait for the new worker


def test_metrics_say_whether_init_fails(runtime):
    gauge = 'kubelambda_runtime_init_failed{function="function",namespace="default"}'
    failing = runtime({"app.py": "import no_such_module\n"})
    assert f"{gauge} 1.0" in failing.client.get("/metrics").text.splitlines()
    working = runtime({"app.py": "def handler(event, context):\n    return 1\n"})
    assert f"{gauge} 0.0" in working.client.get("/metrics").text.splitlines()
