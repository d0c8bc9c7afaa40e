"""The Lambda Invoke API on the public port: RequestResponse, Event, DryRun and its errors."""

from __future__ import annotations

import base64
import json

import pytest

from kubelambda.api.identity import FunctionKey
from kubelambda.gateway.exceptions import UnknownOperation
from kubelambda.gateway.http import Request
from kubelambda.gateway.routing import FunctionEntry
from kubelambda.gateway.settings import GatewaySettings
from kubelambda.gateway.sources.invoke_api import (
    _MAX_NAMES,
    _NAME_PATH_CHARS,
    _function_name,
    _names,
    _read_headers,
)
from unit.gateway.serving import HELLO, MakeStandIn, Served, StartGateway, wait_for

pytestmark = pytest.mark.anyio

TEAM = FunctionKey("team", "worker")
INVOKE = "/2015-03-31/functions/{}/invocations"


async def ready(
    serve: StartGateway, standin: MakeStandIn, **options: object
) -> tuple[Served, object]:
    instance = await standin(concurrency=4)
    served = await serve(functions=[FunctionEntry(HELLO), FunctionEntry(TEAM)], **options)
    served.platform.set_instances(HELLO, [instance.instance()])
    served.platform.set_instances(TEAM, [instance.instance()])
    return served, instance


async def test_request_response_returns_the_function_result(
    serve: StartGateway, standin: MakeStandIn
) -> None:
    served, instance = await ready(serve, standin)
    context = base64.b64encode(json.dumps({"custom": {"a": 1}}).encode()).decode()
    answer = await served.client.post(
        INVOKE.format("hello"),
        json={"return": {"answer": 42}},
        headers={"x-amz-client-context": context, "x-amz-log-type": "Tail"},
    )
    assert answer.status_code == 200
    assert answer.json() == {"answer": 42}
    assert answer.headers["x-amz-executed-version"] == "$LATEST"
    assert "x-amz-function-error" not in answer.headers
    log = base64.b64decode(answer.headers["x-amz-log-result"]).decode()
    request_id = answer.headers["x-amzn-requestid"]
    assert f"START RequestId: {request_id}" in log
    received = instance.received[-1]
    assert received.event == {"return": {"answer": 42}}
    assert received.headers["lambda-runtime-aws-request-id"] == request_id
    assert received.headers["lambda-runtime-client-context"] == context
    assert received.headers["x-amz-log-type"] == "Tail"
    assert received.headers["lambda-runtime-invoked-function-arn"].endswith(":function:hello")


async def test_function_errors_pass_through_as_200(
    serve: StartGateway, standin: MakeStandIn
) -> None:
    served, _ = await ready(serve, standin)
    answer = await served.client.post(INVOKE.format("hello"), json={"raise": "boom"})
    assert answer.status_code == 200
    assert answer.headers["x-amz-function-error"] == "Unhandled"
    assert answer.json()["errorMessage"] == "boom"


@pytest.mark.parametrize(
    ("name", "query"),
    [
        ("team.worker", ""),
        ("team.worker%3A%24LATEST", ""),
        ("arn%3Aaws%3Alambda%3Aus-east-1%3A000000000000%3Afunction%3Ateam.worker", ""),
        ("team.worker", "?Qualifier=%24LATEST"),
    ],
)
async def test_function_name_forms(
    serve: StartGateway, standin: MakeStandIn, name: str, query: str
) -> None:
    served, instance = await ready(serve, standin)
    answer = await served.client.post(INVOKE.format(name) + query, json={})
    assert answer.status_code == 200, answer.text
    arn = instance.received[-1].headers["lambda-runtime-invoked-function-arn"]
    assert arn == "arn:aws:lambda:us-east-1:000000000000:function:team.worker"


async def test_empty_payload_is_allowed(serve: StartGateway, standin: MakeStandIn) -> None:
    served, instance = await ready(serve, standin)
    answer = await served.client.post(INVOKE.format("hello"))
    assert answer.status_code == 200
    assert instance.received[-1].event == {}


async def test_dry_run_checks_and_invokes_nothing(
    serve: StartGateway, standin: MakeStandIn
) -> None:
    served, instance = await ready(serve, standin)
    headers = {"x-amz-invocation-type": "DryRun"}
    answer = await served.client.post(INVOKE.format("hello"), json={}, headers=headers)
    assert answer.status_code == 204
    assert answer.content == b""
    missing = await served.client.post(INVOKE.format("nope"), json={}, headers=headers)
    assert missing.status_code == 404
    assert instance.received == []


async def test_event_is_accepted_at_once_and_delivered_later(
    serve: StartGateway, standin: MakeStandIn
) -> None:
    served, instance = await ready(serve, standin)
    answer = await served.client.post(
        INVOKE.format("hello"),
        json={"job": 1},
        headers={"x-amz-invocation-type": "Event"},
    )
    assert answer.status_code == 202
    assert answer.content == b""
    await wait_for(lambda: instance.received)
    received = instance.received[0]
    assert received.event == {"job": 1}
    assert received.headers["lambda-runtime-aws-request-id"] == answer.headers["x-amzn-requestid"]


@pytest.mark.parametrize(
    ("name", "headers", "body", "status", "error_type", "message"),
    [
        ("nope", {}, b"{}", 404, "ResourceNotFoundException", "Function not found: default/nope"),
        ("hello:7", {}, b"{}", 404, "ResourceNotFoundException", "only $LATEST exists"),
        ("Bad_Name", {}, b"{}", 400, "ValidationException", "is not a DNS label"),
        ("hello", {}, b"{not json", 400, "InvalidRequestContentException", "Could not parse"),
        # Nested too deep for a parser: refused, not a 500 (the body is under 6 MB).
        ("hello", {}, b"[" * 200_000, 400, "InvalidRequestContentException", "Could not parse"),
        (
            "hello",
            {"x-amz-invocation-type": "Sometimes"},
            b"{}",
            400,
            "InvalidParameterValueException",
            "use RequestResponse, Event or DryRun",
        ),
        (
            "hello",
            {"x-amz-log-type": "Everything"},
            b"{}",
            400,
            "InvalidParameterValueException",
            "use None or Tail",
        ),
        (
            "hello",
            {"x-amz-client-context": "%%%"},
            b"{}",
            400,
            "InvalidRequestContentException",
            "base64-encoded JSON",
        ),
        (
            "hello",
            {"x-amz-invocation-type": "Event"},
            b'"' + b"x" * 300_000 + b'"',
            413,
            "RequestTooLargeException",
            "limit of asynchronous invocations",
        ),
    ],
)
async def test_bad_invocations(
    serve: StartGateway,
    standin: MakeStandIn,
    name: str,
    headers: dict[str, str],
    body: bytes,
    status: int,
    error_type: str,
    message: str,
) -> None:
    served, instance = await ready(serve, standin)
    answer = await served.client.post(INVOKE.format(name), content=body, headers=headers)
    assert answer.status_code == status
    assert answer.headers["x-amzn-errortype"] == error_type
    assert answer.headers["x-amzn-requestid"]
    document = answer.json()
    assert document["Type"] == "User"
    assert message in document["message"]
    assert instance.received == []


async def test_sync_payload_over_the_limit_is_413(
    serve: StartGateway, standin: MakeStandIn
) -> None:
    served, _ = await ready(
        serve, standin, settings=GatewaySettings(max_body_bytes=1000, invoke_auth=False)
    )
    answer = await served.client.post(INVOKE.format("hello"), content=b"[" + b"1," * 600 + b"1]")
    assert answer.status_code == 413
    assert answer.headers["x-amzn-errortype"] == "RequestTooLargeException"


async def test_only_post(serve: StartGateway, standin: MakeStandIn) -> None:
    served, _ = await ready(serve, standin)
    answer = await served.client.get(INVOKE.format("hello"))
    assert answer.status_code == 405
    assert answer.headers["allow"] == "POST"


async def test_full_event_queue_is_429(serve: StartGateway, standin: MakeStandIn) -> None:
    # No delivery workers: the one place in the queue stays taken.
    settings = GatewaySettings(
        delivery_queue_size=1, delivery_workers=0, retry_after_seconds=2, invoke_auth=False
    )
    served, _ = await ready(serve, standin, settings=settings)
    headers = {"x-amz-invocation-type": "Event"}
    first = await served.client.post(INVOKE.format("hello"), json={}, headers=headers)
    assert first.status_code == 202
    second = await served.client.post(INVOKE.format("hello"), json={}, headers=headers)
    assert second.status_code == 429
    assert second.headers["x-amzn-errortype"] == "TooManyRequestsException"
    assert second.headers["retry-after"] == "2"


def test_headers_are_read_in_one_pass_first_value_first() -> None:
    # As Request.header finds them: the first of repeated headers, names lower-case bytes.
    request = Request.from_scope(
        {
            "method": "POST",
            "path": INVOKE.format("hello"),
            "headers": [
                (b"x-amz-invocation-type", b"DryRun"),
                (b"x-other", b"x"),
                (b"x-amz-invocation-type", b"Event"),
                (b"x-amz-log-type", b""),
                (b"x-amzn-trace-id", b"Root=1-5759e988-bd862e3fe1be46a994272793"),
            ],
        },
        _no_body,
        received=0.0,
    )
    assert _read_headers(request) == {
        b"x-amz-invocation-type": "DryRun",
        b"x-amz-log-type": "",
        b"x-amzn-trace-id": "Root=1-5759e988-bd862e3fe1be46a994272793",
    }


async def _no_body() -> dict[str, object]:
    return {"type": "http.disconnect"}


def test_remembered_function_names_are_bounded_and_only_valid_ones() -> None:
    for n in range(_MAX_NAMES + 10):
        assert _function_name(INVOKE.format(f"fn-{n}%3A%24LATEST")) == f"fn-{n}:$LATEST"
        assert len(_names) <= _MAX_NAMES
    long = INVOKE.format("f" * _NAME_PATH_CHARS)
    assert _function_name(long) == "f" * _NAME_PATH_CHARS
    assert long not in _names
    for _ in range(2):  # a path that does not parse is refused every time
        with pytest.raises(UnknownOperation):
            _function_name("/2015-03-31/functions/hello/other")
