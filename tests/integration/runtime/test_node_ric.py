"""AWS's Node.js runtime interface client (aws-lambda-ric, from npm) as a provided.al2023
bootstrap: a Node handler answers through the runtime's invoke endpoint with Lambda's context
and error shape, and its console output reaches the log as Lambda's Node runtime writes it."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from integration.runtime.custom_runtimes import builds
from support.runtime import RuntimeProcess, start_runtime
from support.waiting import wait_for


@pytest.fixture
def node_function(tmp_path: Path) -> Iterator[Callable[[str], RuntimeProcess]]:
    started: list[RuntimeProcess] = []

    def start(handler: str) -> RuntimeProcess:
        code = builds.code_folder(
            tmp_path / f"code{len(started)}",
            builds.NODE_RIC_FOLDER / "bootstrap",
            **{"handler.mjs": (builds.NODE_RIC_FOLDER / "handler.mjs").read_text()},
        )
        env = {"KUBELAMBDA_RUNTIME": "provided.al2023", **builds.node_ric_environment()}
        process = start_runtime(code_dir=code, handler=handler, env=env)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


def test_aws_lambda_ric_as_the_bootstrap(node_function):
    fn = node_function("handler.echo")
    answer = fn.invoke(
        json.dumps({"x": 1}),
        **{
            "Lambda-Runtime-Aws-Request-Id": "req-node",
            "Lambda-Runtime-Invoked-Function-Arn": "arn:aws:lambda:eu-west-1:123:function:node",
        },
    )
    assert answer.status_code == 200, answer.text
    assert "x-amz-function-error" not in answer.headers
    result = answer.json()
    assert result["event"] == {"x": 1}
    assert result["request_id"] == "req-node"
    assert result["function_arn"] == "arn:aws:lambda:eu-west-1:123:function:node"
    assert 0 < result["remaining_ms"] <= 3000

    failed = fn.invoke(json.dumps({"fail": True}), **{"Lambda-Runtime-Aws-Request-Id": "req-nf"})
    assert failed.headers["x-amz-function-error"] == "Unhandled"
    document = failed.json()
    assert document["errorType"] == "Error"
    assert document["errorMessage"] == "the handler failed on purpose"
    # Node's runtime client posts its stack as "trace", as Lambda answers for Node functions.
    assert any("handler.mjs" in line for line in document["trace"])

    def logged() -> str | None:
        text = fn.logs()
        return text if "\treq-node\tINFO\taws-lambda-ric handler says hello" in text else None

    logs = wait_for(logged, timeout=10, what="the handler's console.log line")
    assert "REPORT RequestId: req-node\t" in logs


def test_aws_lambda_ric_init_error_is_answered(node_function):
    fn = node_function("missing.echo")
    health = fn.client.get("/healthz")
    assert (health.status_code, health.json()["status"]) == (200, "init_failed")
    answer = fn.invoke("{}", **{"Lambda-Runtime-Aws-Request-Id": "req-node-init"})
    assert answer.headers["x-amz-function-error"] == "Unhandled"
    document = answer.json()
    # aws-lambda-ric's own words, posted to /runtime/init/error.
    assert document["errorType"] == "Runtime.ImportModuleError", document
    assert "missing" in document["errorMessage"]
    assert document["requestId"] == "req-node-init"
