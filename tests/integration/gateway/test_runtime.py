"""The gateway in front of the real function runtime (`python -m kubelambda_runtime`)."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import httpx
import pytest

from integration.gateway.conftest import GatewayThread
from kubelambda.api.identity import FunctionKey
from kubelambda.gateway.platform import Instance
from kubelambda.gateway.routing import FunctionEntry, HttpRoute
from support.runtime import RuntimeProcess, start_runtime, write_code
from support.waiting import wait_for

HELLO = FunctionKey("default", "hello")

APP = """
import json


def handler(event, context):
    if event.get("version") == "2.0":  # an HTTP trigger event
        asked = json.loads(event.get("body") or "{}")
        if "raise" in asked:
            raise ValueError(asked["raise"])
        return {
            "statusCode": 201,
            "headers": {"content-type": "application/json", "x-handled": "yes"},
            "cookies": ["seen=1"],
            "body": json.dumps({
                "path": event["rawPath"],
                "requestId": context.aws_request_id,
                "remaining": context.get_remaining_time_in_millis(),
            }),
        }
    if "raise" in event:
        raise ValueError(event["raise"])
    if "write" in event:
        with open(event["write"], "w") as out:
            out.write(context.aws_request_id)
    print("handling", event)
    return {
        "event": event,
        "requestId": context.aws_request_id,
        "arn": context.invoked_function_arn,
        "remaining": context.get_remaining_time_in_millis(),
    }
"""

ENV = {"AWS_LAMBDA_FUNCTION_NAME": "hello", "AWS_LAMBDA_FUNCTION_TIMEOUT": "5"}


def instance_of(runtime: RuntimeProcess, concurrency: int) -> Instance:
    address = urlsplit(runtime.url)
    return Instance("runtime", address.hostname or "", address.port or 0, concurrency)


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[RuntimeProcess]:
    process = start_runtime(
        code_dir=write_code(tmp_path / "code", {"app.py": APP}),
        env={**ENV, "KUBELAMBDA_CONCURRENCY": "2"},
    )
    yield process
    process.stop()


@pytest.fixture
def served(gateway_thread: GatewayThread, runtime: RuntimeProcess) -> Iterator[tuple[str, Any]]:
    addresses = gateway_thread.start(
        functions=[FunctionEntry(HELLO, timeout_seconds=5)],
        routes=[HttpRoute(HELLO, "/hello")],
    )
    gateway_thread.set_instances(HELLO, [instance_of(runtime, 2)])
    client = boto3.client(
        "lambda",
        endpoint_url=addresses.public_url,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    yield addresses.public_url, client
    client.close()


def test_http_trigger_reaches_the_handler_and_maps_its_answer(served: tuple[str, Any]) -> None:
    url, _ = served
    answer = httpx.get(f"{url}/hello/there", timeout=30)
    assert answer.status_code == 201
    assert answer.headers["x-handled"] == "yes"
    assert answer.headers["set-cookie"] == "seen=1"
    body = answer.json()
    assert body["path"] == "/hello/there"
    assert body["requestId"] == answer.headers["apigw-requestid"]
    # the handler got (close to) its whole 5 s timeout
    assert 3000 < body["remaining"] <= 5000


def test_handler_exception_is_502_on_http(served: tuple[str, Any]) -> None:
    url, _ = served
    answer = httpx.post(f"{url}/hello", json={"raise": "nope"}, timeout=30)
    assert answer.status_code == 502
    assert answer.json() == {"message": "Internal Server Error"}


def test_boto3_invoke_through_gateway_and_runtime(served: tuple[str, Any]) -> None:
    _, client = served
    answer = client.invoke(FunctionName="hello", Payload=b'{"n": 1}', LogType="Tail")
    result = json.loads(answer["Payload"].read())
    assert result["event"] == {"n": 1}
    assert result["requestId"] == answer["ResponseMetadata"]["RequestId"]
    assert result["arn"] == "arn:aws:lambda:us-east-1:000000000000:function:hello"
    assert 3000 < result["remaining"] <= 5000
    log = base64.b64decode(answer["LogResult"]).decode()
    assert "handling {'n': 1}" in log

    failed = client.invoke(FunctionName="hello", Payload=b'{"raise": "bad input"}')
    assert failed["FunctionError"] == "Unhandled"
    error = json.loads(failed["Payload"].read())
    assert (error["errorType"], error["errorMessage"]) == ("ValueError", "bad input")
    assert error["stackTrace"]


def test_event_invocation_runs_the_handler(served: tuple[str, Any], tmp_path: Path) -> None:
    _, client = served
    marker = tmp_path / "ran"
    answer = client.invoke(
        FunctionName="hello", InvocationType="Event", Payload=json.dumps({"write": str(marker)})
    )
    assert answer["StatusCode"] == 202
    wait_for(marker.exists, timeout=20, what="the asynchronous invocation to run")
    wait_for(marker.read_text, timeout=5, what="the handler to write its request id")
    assert marker.read_text() == answer["ResponseMetadata"]["RequestId"]


def test_cold_start_from_zero_with_a_real_runtime(
    gateway_thread: GatewayThread, tmp_path: Path
) -> None:
    code = write_code(tmp_path / "code", {"app.py": APP})
    started: list[RuntimeProcess] = []

    async def wake(function: FunctionKey) -> None:
        # What local mode does: start a runtime process, report it once it is ready.
        runtime = await asyncio.to_thread(
            start_runtime, code_dir=code, env={**ENV, "KUBELAMBDA_CONCURRENCY": "4"}
        )
        started.append(runtime)
        gateway_thread.platform.set_instances(function, [instance_of(runtime, 4)])

    gateway_thread.platform.on_wake = wake
    addresses = gateway_thread.start(
        functions=[FunctionEntry(HELLO, timeout_seconds=5)], routes=[HttpRoute(HELLO, "/hello")]
    )
    try:

        async def burst() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=addresses.public_url, timeout=30) as client:
                return await asyncio.gather(*(client.get("/hello") for _ in range(4)))

        answers = asyncio.run(burst())
        assert [a.status_code for a in answers] == [201] * 4
        assert all(a.headers["server-timing"].startswith("coldstart;dur=") for a in answers)
        assert len(started) == 1
    finally:
        for runtime in started:
            runtime.stop()
