"""custom/invocations.py, custom/bootstrap.py and the custom runtime's settings: what the bootstrap
is given (Lambda's headers, its environment), where it is looked for, how its output becomes
log lines, and how a posted error becomes the caller's error document."""

from __future__ import annotations

import base64
import json
import os
import time
from pathlib import Path

import pytest

from kubelambda_runtime.custom import bootstrap, invocations
from kubelambda_runtime.wire import config, faults
from kubelambda_runtime.wire.invocation import Invocation

ARN = "arn:aws:lambda:us-east-1:000000000000:function:f"


def test_delivery_carries_lambdas_headers_and_decodes_the_client_context() -> None:
    client_context = base64.b64encode(json.dumps({"custom": {"k": "é"}}).encode()).decode()
    invocation = Invocation(
        request_id="r1",
        body=b'{"a": 1}',
        arn="arn:aws:lambda:eu-west-1:1:function:called",
        client_context=client_context,
        identity='{"cognitoIdentityId": "i", "cognitoIdentityPoolId": "p"}',
        trace_id="Root=1-2-3",
        tenant_id="tenant-a",
    )
    delivery = invocations.delivery(invocation, deadline_ms=1234, function_arn=ARN)
    assert delivery.request_id == "r1"
    assert delivery.body == b'{"a": 1}'
    assert dict(delivery.headers) == {
        "Lambda-Runtime-Deadline-Ms": "1234",
        "Lambda-Runtime-Invoked-Function-Arn": "arn:aws:lambda:eu-west-1:1:function:called",
        "Lambda-Runtime-Trace-Id": "Root=1-2-3",
        # JSON, as aws-lambda-go and awslambdaric parse it; ASCII, so it fits a header.
        "Lambda-Runtime-Client-Context": '{"custom":{"k":"\\u00e9"}}',
        "Lambda-Runtime-Cognito-Identity": '{"cognitoIdentityId":"i","cognitoIdentityPoolId":"p"}',
        "Lambda-Runtime-Aws-Tenant-Id": "tenant-a",
        "Content-Type": "application/json",
    }


def test_delivery_of_a_bare_invocation() -> None:
    delivery = invocations.delivery(
        Invocation(request_id="r2", body=b"  ", client_context="not base64 json!", identity="[]"),
        deadline_ms=1,
        function_arn=ARN,
    )
    assert delivery.body == b"{}"  # an empty body is the event {}, as the invoke endpoint reads it
    assert dict(delivery.headers) == {
        "Lambda-Runtime-Deadline-Ms": "1",
        "Lambda-Runtime-Invoked-Function-Arn": ARN,
        "Content-Type": "application/json",
    }


@pytest.mark.parametrize(
    ("body", "error_type", "document"),
    [
        (b'{"errorMessage":"m","errorType":"T"}', "", b'{"errorMessage":"m","errorType":"T"}'),
        (b"plain words", "My.Error", b'{"errorMessage": "plain words", "errorType": "My.Error"}'),
        (b"", "", b'{"errorMessage": "", "errorType": "Unhandled"}'),
        (b'["a list"]', "", b'{"errorMessage": "[\\"a list\\"]", "errorType": "Unhandled"}'),
    ],
)
def test_a_posted_error_becomes_an_error_document(
    body: bytes, error_type: str, document: bytes
) -> None:
    assert invocations.error_document(body, error_type=error_type) == document


def test_the_bootstrap_is_looked_for_in_the_task_root(tmp_path: Path) -> None:
    (tmp_path / "bootstrap").write_text("#!/bin/sh\n")
    assert bootstrap.find(str(tmp_path)) == str(tmp_path / "bootstrap")
    empty = tmp_path / "empty"
    empty.mkdir()
    if os.path.exists("/opt/bootstrap"):
        pytest.fail("this machine has an /opt/bootstrap, which the lookup would find")
    with pytest.raises(faults.Fault) as missing:
        bootstrap.find(str(empty))
    assert missing.value.error_type == "Runtime.InvalidEntrypoint"
    assert missing.value.message == (
        f"Couldn't find valid bootstrap(s): [{empty}/bootstrap /opt/bootstrap]"
    )


def test_a_bootstrap_that_cannot_run_is_worded_as_lambda_words_it(tmp_path: Path) -> None:
    script = tmp_path / "bootstrap"
    script.write_bytes(b"\x7fELF not really")
    script.chmod(0o755)
    with pytest.raises(faults.Fault) as refused:
        bootstrap.start(str(script), environment={}, cwd=str(tmp_path))
    assert refused.value.message == f"fork/exec {script}: exec format error"


def test_output_becomes_lines_as_they_come_and_a_drain_writes_the_rest(tmp_path: Path) -> None:
    lines: list[str] = []
    read_end, write_end = os.pipe()
    output = bootstrap.Output(read_end, lines.append)
    os.write(write_end, b"first\nsecond\nunfinished")
    output.drain()
    assert lines == ["first", "second", "unfinished"]
    os.write(write_end, b"\xff bad bytes\n")
    os.close(write_end)
    output.drain()
    assert lines[3:] == ["\ufffd bad bytes"]


def test_the_bootstrap_runs_in_the_task_root_its_output_and_exit_reported(tmp_path: Path) -> None:
    script = tmp_path / "bootstrap"
    script.write_text('#!/bin/sh\necho "out in $(pwd) with $GREETING"\necho err >&2\nexit 3\n')
    script.chmod(0o755)
    process, fd = bootstrap.start(
        str(script), environment={"GREETING": "hi", "PATH": "/usr/bin:/bin"}, cwd=str(tmp_path)
    )
    ended: list[int] = []
    bootstrap.watch_exit(process, ended.append)
    lines: list[str] = []
    output = bootstrap.Output(fd, lines.append)
    deadline = time.monotonic() + 10
    while not ended or len(lines) < 2:
        assert time.monotonic() < deadline, (ended, lines)
        output.drain()
        time.sleep(0.005)
    assert lines == [f"out in {tmp_path} with hi", "err"]  # stdout and stderr, one pipe
    assert ended == [3]


def test_a_custom_runtimes_settings_and_environment() -> None:
    settings = config.from_environment({"KUBELAMBDA_RUNTIME": "provided.al2023"})
    assert settings.custom_runtime and settings.handler == ""
    env = config.worker_environment(
        settings, base={"_HANDLER": "", "AWS_EXECUTION_ENV": "x"}, log_stream_name="s"
    )
    assert "_HANDLER" not in env  # none given
    assert "AWS_EXECUTION_ENV" not in env and "PYTHONUNBUFFERED" not in env
    with_handler = config.from_environment(
        {"KUBELAMBDA_RUNTIME": "provided.al2", "_HANDLER": "function.handler"}
    )
    assert (
        config.worker_environment(with_handler, base={}, log_stream_name="s")["_HANDLER"]
        == "function.handler"
    )
    python = config.from_environment({"_HANDLER": "app.handler"})
    assert not python.custom_runtime
    assert config.worker_environment(python, base={}, log_stream_name="s")[
        "AWS_EXECUTION_ENV"
    ].startswith("AWS_Lambda_python3.")
    with pytest.raises(config.ConfigError):
        config.from_environment({"KUBELAMBDA_RUNTIME": "python3.12"})  # and no _HANDLER
