"""Custom runtimes (provided.al2023) as a real runtime process: a Go function built against
aws-lambda-go and AWS's Python runtime interface client (awslambdaric) as bootstraps, served the
Lambda Runtime API, answering the invoke endpoint with the same timeouts, crash handling, logs
and error shapes as a Python function."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from integration.runtime.custom_runtimes import builds
from support.runtime import RuntimeProcess, start_runtime
from support.waiting import wait_for

Start = Callable[..., RuntimeProcess]
CUSTOM = {"KUBELAMBDA_RUNTIME": "provided.al2023"}


@pytest.fixture(scope="module")
def go_function() -> Path:
    return builds.go_bootstrap()


@pytest.fixture
def custom(tmp_path: Path) -> Iterator[Start]:
    """``custom(bootstrap, handler=..., env=..., files=...)`` starts a runtime for a
    provided.al2023 function whose code folder holds ``bootstrap``; all stop at the end."""
    started: list[RuntimeProcess] = []

    def start(
        bootstrap: Path | None, *, files: dict[str, str] | None = None, **options: Any
    ) -> RuntimeProcess:
        code = tmp_path / f"code{len(started)}"
        if bootstrap is None:  # the files only, as they are written (not executable)
            code.mkdir()
            for name, text in (files or {}).items():
                (code / name).write_text(text)
        else:
            builds.code_folder(code, bootstrap, **(files or {}))
        env = {**CUSTOM, **options.pop("env", {})}
        options.setdefault("handler", "bootstrap")
        process = start_runtime(code_dir=code, env=env, **options)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


def invoke(fn: RuntimeProcess, event: dict[str, Any], **headers: str) -> Any:
    return fn.invoke(json.dumps(event), **headers)


def test_go_function_answers_with_lambdas_headers_context_and_logs(custom, go_function):
    fn = custom(go_function, env={"AWS_LAMBDA_FUNCTION_NAME": "gofn", "MY_SETTING": "pod"})
    deadline = int(time.time() * 1000) + 2500
    client_context = base64.b64encode(json.dumps({"custom": {"k": "v"}}).encode()).decode()
    answer = invoke(
        fn,
        {"say": "hello from go"},
        **{
            "Lambda-Runtime-Aws-Request-Id": "req-go-1",
            "Lambda-Runtime-Deadline-Ms": str(deadline),
            "Lambda-Runtime-Invoked-Function-Arn": "arn:aws:lambda:eu-west-1:123:function:gofn",
            "Lambda-Runtime-Client-Context": client_context,
            "Lambda-Runtime-Cognito-Identity": json.dumps(
                {"cognitoIdentityId": "id-1", "cognitoIdentityPoolId": "pool-1"}
            ),
            "X-Amzn-Trace-Id": "Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Sampled=1",
            "X-Amz-Log-Type": "Tail",
        },
    )
    assert answer.status_code == 200, answer.text
    assert "x-amz-function-error" not in answer.headers
    assert answer.headers["lambda-runtime-aws-request-id"] == "req-go-1"
    result = answer.json()
    assert result["requestId"] == "req-go-1"
    assert result["deadlineMs"] == deadline
    assert result["functionArn"] == "arn:aws:lambda:eu-west-1:123:function:gofn"
    assert result["traceId"] == "Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Sampled=1"
    assert (result["identityId"], result["identityPool"]) == ("id-1", "pool-1")
    assert result["clientCustom"] == {"k": "v"}
    assert result["functionName"] == "gofn"
    assert result["event"]["say"] == "hello from go"
    assert result["cwd"] == str(fn.code_dir)
    env = result["env"]
    host, _, port = env["AWS_LAMBDA_RUNTIME_API"].partition(":")
    assert host == "127.0.0.1" and port.isdigit()
    assert env["_HANDLER"] == "bootstrap"
    assert env["LAMBDA_TASK_ROOT"] == str(fn.code_dir)
    assert env["MY_SETTING"] == "pod"
    assert "AWS_EXECUTION_ENV" not in env  # Lambda sets none for its OS-only runtimes
    tail = base64.b64decode(answer.headers["x-amz-log-result"]).decode()
    assert "hello from go\n" in tail and "hello from go (on stderr)\n" in tail

    # Warm: the same environment answers the next invocation, on the same keep-alive connection
    # (which the server hands to the worker) and without a deadline from the caller.
    again = invoke(fn, {})
    assert again.json()["pid"] == result["pid"] and again.json()["calls"] == 2
    assert 0 < again.json()["deadlineMs"] - time.time() * 1000 <= 3000  # the default 3 s

    wait_for(lambda: "END RequestId: req-go-1" in fn.logs(), timeout=5, what="the END line")
    logs = fn.logs()
    start, said, end = (
        logs.index("START RequestId: req-go-1"),
        logs.index("\nhello from go\n"),
        logs.index("END RequestId: req-go-1"),
    )
    assert start < said < end
    assert "REPORT RequestId: req-go-1" in logs and "Init Duration" in logs


def test_go_error_is_lambdas_error_shape_and_keeps_the_environment(custom, go_function):
    fn = custom(go_function)
    first = invoke(fn, {}).json()
    answer = invoke(fn, {"action": "error"}, **{"Lambda-Runtime-Aws-Request-Id": "req-err"})
    assert answer.status_code == 200
    assert answer.headers["x-amz-function-error"] == "Unhandled"
    # As aws-lambda-go posted it to /invocation/{id}/error, as Lambda passes it on.
    assert answer.json() == {
        "errorMessage": "the function failed on purpose",
        "errorType": "errorString",
    }
    after = invoke(fn, {}).json()
    assert after["pid"] == first["pid"] and after["calls"] == 3


def test_go_handler_past_its_timeout_is_stopped_and_replaced(custom, go_function):
    fn = custom(go_function, env={"AWS_LAMBDA_FUNCTION_TIMEOUT": "1"})
    first = invoke(fn, {}).json()
    started = time.monotonic()
    answer = invoke(
        fn, {"action": "sleep", "sleepMs": 5000}, **{"Lambda-Runtime-Aws-Request-Id": "req-slow"}
    )
    assert time.monotonic() - started < 4
    assert answer.headers["x-amz-function-error"] == "Unhandled"
    assert answer.json() == {
        "errorMessage": "RequestId: req-slow Error: Task timed out after 1.00 seconds",
        "errorType": "Sandbox.Timedout",
        "requestId": "req-slow",
        "stackTrace": [],
    }
    after = invoke(fn, {}).json()
    assert after["pid"] != first["pid"] and after["calls"] == 1  # a fresh environment
    assert "req-slow Task timed out after 1.00 seconds" in fn.logs()


def test_go_function_that_crashes_mid_invocation_is_an_exit_error(custom, go_function):
    # No handler: optional for a custom runtime, and then _HANDLER is not set at all.
    fn = custom(go_function, handler="")
    first = invoke(fn, {}).json()
    assert "_HANDLER" not in first["env"]
    answer = invoke(fn, {"action": "exit"}, **{"Lambda-Runtime-Aws-Request-Id": "req-exit"})
    assert answer.headers["x-amz-function-error"] == "Unhandled"
    assert answer.json() == {
        "errorMessage": "RequestId: req-exit Error: Runtime exited with error: exit status 3",
        "errorType": "Runtime.ExitError",
        "requestId": "req-exit",
        "stackTrace": [],
    }
    after = invoke(fn, {}).json()
    assert after["pid"] != first["pid"]


def test_bootstrap_that_exits_during_init_fails_init_as_lambda_says(custom, go_function):
    fn = custom(go_function, env={"KUBELAMBDA_TEST_EXIT_AT_INIT": "1"})
    assert fn.client.get("/healthz").json()["status"] == "init_failed"
    answer = invoke(fn, {}, **{"Lambda-Runtime-Aws-Request-Id": "req-init"})
    assert answer.headers["x-amz-function-error"] == "Unhandled"
    document = answer.json()
    assert document["errorType"] == "Runtime.ExitError"
    assert document["errorMessage"] == "Runtime exited with error: exit status 2"
    assert document["requestId"] == "req-init"
    assert "init: exiting on purpose" in fn.logs()


def test_missing_bootstrap_is_an_invalid_entrypoint(custom):
    fn = custom(None)
    answer = invoke(fn, {})
    assert answer.headers["x-amz-function-error"] == "Unhandled"
    document = answer.json()
    assert document["errorType"] == "Runtime.InvalidEntrypoint"
    assert document["errorMessage"] == (
        f"Couldn't find valid bootstrap(s): [{fn.code_dir}/bootstrap /opt/bootstrap]"
    )


def test_bootstrap_that_cannot_be_run_is_an_invalid_entrypoint(custom):
    fn = custom(None, files={"bootstrap": "#!/bin/sh\nexit 0\n"})  # not executable
    answer = invoke(fn, {})
    assert answer.json()["errorType"] == "Runtime.InvalidEntrypoint"
    assert answer.json()["errorMessage"] == (
        f"fork/exec {fn.code_dir}/bootstrap: permission denied"
    )


def test_awslambdaric_as_the_bootstrap(custom):
    bootstrap = builds.AWSLAMBDARIC_FOLDER / "bootstrap"
    handler = (builds.AWSLAMBDARIC_FOLDER / "handler.py").read_text()
    fn = custom(
        bootstrap,
        handler="handler.echo",
        files={"handler.py": handler},
        env=builds.awslambdaric_environment(),
    )
    answer = invoke(
        fn,
        {"x": 1},
        **{
            "Lambda-Runtime-Aws-Request-Id": "req-ric",
            "Lambda-Runtime-Invoked-Function-Arn": "arn:aws:lambda:eu-west-1:123:function:ric",
        },
    )
    assert answer.status_code == 200, answer.text
    assert "x-amz-function-error" not in answer.headers
    result = answer.json()
    assert result["event"] == {"x": 1}
    assert result["request_id"] == "req-ric"
    assert result["function_arn"] == "arn:aws:lambda:eu-west-1:123:function:ric"
    assert 0 < result["remaining_ms"] <= 3000
    assert result["runtime_api"].startswith("127.0.0.1:")
    assert result["handler"] == "handler.echo"

    failed = invoke(fn, {"fail": True}, **{"Lambda-Runtime-Aws-Request-Id": "req-ric-err"})
    assert failed.headers["x-amz-function-error"] == "Unhandled"
    document = failed.json()
    assert document["errorType"] == "ValueError"
    assert document["errorMessage"] == "the handler failed on purpose"
    assert any("raise ValueError" in line for line in document["stackTrace"])
    wait_for(
        lambda: "awslambdaric handler says hello" in fn.logs(), timeout=5, what="the print line"
    )


def test_awslambdaric_init_error_is_posted_and_answered(custom):
    fn = custom(
        builds.AWSLAMBDARIC_FOLDER / "bootstrap",
        handler="missing.echo",
        env=builds.awslambdaric_environment(),
    )
    assert fn.client.get("/healthz").json()["status"] == "init_failed"
    answer = invoke(fn, {}, **{"Lambda-Runtime-Aws-Request-Id": "req-ric-init"})
    assert answer.headers["x-amz-function-error"] == "Unhandled"
    document = answer.json()
    # awslambdaric's own words, posted to /runtime/init/error.
    assert document["errorType"] == "Runtime.ImportModuleError"
    assert document["errorMessage"].startswith("Unable to import module 'missing'")
    assert document["requestId"] == "req-ric-init"
