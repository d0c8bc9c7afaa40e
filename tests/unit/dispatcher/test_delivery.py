"""Asynchronous delivery: retries with backoff, throttles that spend no retry, dead letters."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kubelambda.api.identity import FunctionKey
from kubelambda.delivery.jobs import DeliveryPolicy, Target
from kubelambda.gateway.routing import FunctionEntry
from kubelambda.gateway.settings import GatewaySettings
from unit.gateway.serving import HELLO, OK, MakeStandIn, StartGateway, raw_server, wait_for

pytestmark = pytest.mark.anyio

FAILURES = FunctionKey("default", "failures")
INVOKE = "/2015-03-31/functions/hello/invocations"
EVENT = {"headers": {"x-amz-invocation-type": "Event"}}


async def test_failing_event_is_retried_then_sent_to_the_dead_letter_function(
    serve: StartGateway, standin: MakeStandIn
) -> None:
    worker, failures = await standin(concurrency=2), await standin(concurrency=2)
    policy = DeliveryPolicy(retries=2, backoff_seconds=0.01, dead_letter_function=FAILURES)
    served = await serve(
        functions=[FunctionEntry(HELLO, delivery=policy), FunctionEntry(FAILURES)],
    )
    served.platform.set_instances(HELLO, [worker.instance()])
    served.platform.set_instances(FAILURES, [failures.instance()])
    answer = await served.client.post(INVOKE, json={"raise": "boom", "order": 7}, **EVENT)
    assert answer.status_code == 202
    request_id = answer.headers["x-amzn-requestid"]
    await wait_for(lambda: failures.received)
    # the first try and two retries, all with the same request id (consumers dedupe on it)
    assert len(worker.received) == 3
    ids = {r.headers["lambda-runtime-aws-request-id"] for r in worker.received}
    assert ids == {request_id}
    record: dict[str, Any] = failures.received[0].event
    assert record["version"] == "1.0"
    assert record["requestContext"] == {
        "requestId": request_id,
        "functionArn": "arn:aws:lambda:us-east-1:000000000000:function:hello:$LATEST",
        "condition": "RetriesExhausted",
        "approximateInvokeCount": 3,
    }
    assert record["requestPayload"] == {"raise": "boom", "order": 7}
    assert record["responseContext"] == {
        "statusCode": 200,
        "executedVersion": "$LATEST",
        "functionError": "Unhandled",
    }
    assert record["responsePayload"]["errorMessage"] == "boom"
    assert record["timestamp"].endswith("Z")
    arn = failures.received[0].headers["lambda-runtime-invoked-function-arn"]
    assert arn.endswith(":function:failures")


async def test_no_retries_means_one_try(serve: StartGateway, standin: MakeStandIn) -> None:
    worker, failures = await standin(), await standin()
    policy = DeliveryPolicy(retries=0, backoff_seconds=0.01, dead_letter_function=FAILURES)
    served = await serve(functions=[FunctionEntry(HELLO, delivery=policy), FunctionEntry(FAILURES)])
    served.platform.set_instances(HELLO, [worker.instance()])
    served.platform.set_instances(FAILURES, [failures.instance()])
    await served.client.post(INVOKE, json={"raise": "once"}, **EVENT)
    await wait_for(lambda: failures.received)
    assert len(worker.received) == 1
    assert failures.received[0].event["requestContext"]["approximateInvokeCount"] == 1


async def test_successful_event_goes_nowhere_else(
    serve: StartGateway, standin: MakeStandIn
) -> None:
    worker = await standin()
    async with raw_server(_record) as letters:
        policy = DeliveryPolicy(
            backoff_seconds=0.01, dead_letter_url=f"http://127.0.0.1:{letters.port}/dlq"
        )
        served = await serve(functions=[FunctionEntry(HELLO, delivery=policy)])
        served.platform.set_instances(HELLO, [worker.instance()])
        for n in range(3):
            await served.client.post(INVOKE, json={"n": n}, **EVENT)
        await wait_for(lambda: len(worker.received) == 3)
        await wait_for(lambda: len(served.gateway.delivery_store) == 0)
        assert letters.requests == []


async def _record(_: int) -> tuple[bytes, bool]:
    return OK, True


async def test_dead_letter_url_gets_the_record_posted(
    serve: StartGateway, standin: MakeStandIn
) -> None:
    worker = await standin()
    async with raw_server(_record) as letters:
        policy = DeliveryPolicy(
            retries=1,
            backoff_seconds=0.01,
            dead_letter_url=f"http://127.0.0.1:{letters.port}/hooks/failed?source=kubelambda",
        )
        served = await serve(functions=[FunctionEntry(HELLO, delivery=policy)])
        served.platform.set_instances(HELLO, [worker.instance()])
        await served.client.post(INVOKE, json={"raise": "nope"}, **EVENT)
        await wait_for(lambda: letters.requests)
    head, _, body = letters.requests[0].partition(b"\r\n\r\n")
    assert head.startswith(b"POST /hooks/failed?source=kubelambda HTTP/1.1")
    assert b"content-type: application/json" in head
    record = json.loads(body)
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 2
    assert record["requestPayload"] == {"raise": "nope"}


async def test_a_dead_letter_url_that_fails_is_retried(
    serve: StartGateway, standin: MakeStandIn
) -> None:
    async def fail_first(n: int) -> tuple[bytes, bool]:
        if n == 1:
            return b"HTTP/1.1 500 Oops\r\ncontent-length: 0\r\n\r\n", True
        return OK, True

    worker = await standin()
    async with raw_server(fail_first) as letters:
        policy = DeliveryPolicy(
            retries=1, backoff_seconds=0.01, dead_letter_url=f"http://127.0.0.1:{letters.port}/"
        )
        served = await serve(functions=[FunctionEntry(HELLO, delivery=policy)])
        served.platform.set_instances(HELLO, [worker.instance()])
        await served.client.post(INVOKE, json={"raise": "x"}, **EVENT)
        await wait_for(lambda: len(letters.requests) == 2)
        await wait_for(lambda: len(served.gateway.delivery_store) == 0)


async def test_waiting_for_an_instance_spends_no_retry(
    serve: StartGateway, standin: MakeStandIn
) -> None:
    worker = await standin()
    # retries=0: a single failed try would drop the event, but no instance being ready
    # is the gateway's problem, not the function's.
    policy = DeliveryPolicy(retries=0, backoff_seconds=0.01)
    settings = GatewaySettings(
        hold_timeout_seconds=0.05,
        throttle_retry_max_seconds=0.05,
        wake_interval_seconds=0.05,
        invoke_auth=False,
    )
    served = await serve(functions=[FunctionEntry(HELLO, delivery=policy)], settings=settings)
    await served.client.post(INVOKE, json={"patient": True}, **EVENT)
    # several holds have timed out by the time the function was woken this often
    await wait_for(lambda: len(served.platform.wakes) >= 4)
    served.platform.set_instances(HELLO, [worker.instance()])
    await wait_for(lambda: worker.received)
    assert worker.received[0].event == {"patient": True}


async def test_events_too_old_go_to_the_dead_letter(
    serve: StartGateway, standin: MakeStandIn
) -> None:
    async with raw_server(_record) as letters:
        policy = DeliveryPolicy(
            retries=2, backoff_seconds=0.01, dead_letter_url=f"http://127.0.0.1:{letters.port}/"
        )
        settings = GatewaySettings(
            hold_timeout_seconds=0.05,
            max_event_age_seconds=0.3,
            throttle_retry_max_seconds=0.05,
            invoke_auth=False,
        )
        served = await serve(functions=[FunctionEntry(HELLO, delivery=policy)], settings=settings)
        await served.client.post(INVOKE, json={"late": True}, **EVENT)
        await wait_for(lambda: letters.requests)
    record = json.loads(letters.requests[0].partition(b"\r\n\r\n")[2])
    assert record["requestContext"]["condition"] == "EventAgeExceeded"
    assert record["requestContext"]["approximateInvokeCount"] == 0
    assert record["responseContext"]["statusCode"] == 504
    assert "no instance of default/hello" in record["responsePayload"]["errorMessage"]


SUCCESSES = FunctionKey("default", "successes")


async def test_a_success_sends_its_record_to_the_success_destination(
    serve: StartGateway, standin: MakeStandIn
) -> None:
    worker, successes = await standin(), await standin()
    policy = DeliveryPolicy(backoff_seconds=0.01, on_success=Target(function=SUCCESSES))
    served = await serve(
        functions=[FunctionEntry(HELLO, delivery=policy), FunctionEntry(SUCCESSES)]
    )
    served.platform.set_instances(HELLO, [worker.instance()])
    served.platform.set_instances(SUCCESSES, [successes.instance()])
    answer = await served.client.post(INVOKE, json={"return": {"total": 42}}, **EVENT)
    await wait_for(lambda: successes.received)
    record = successes.received[0].event
    assert record["requestContext"]["condition"] == "Success"
    assert record["requestContext"]["requestId"] == answer.headers["x-amzn-requestid"]
    assert record["requestContext"]["approximateInvokeCount"] == 1
    assert record["requestPayload"] == {"return": {"total": 42}}
    assert record["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST"}
    assert record["responsePayload"] == {"total": 42}  # what the function returned
    arn = successes.received[0].headers["lambda-runtime-invoked-function-arn"]
    assert arn.endswith(":function:successes")


async def test_a_failure_goes_to_the_dead_letter_and_the_failure_destination(
    serve: StartGateway, standin: MakeStandIn
) -> None:
    worker, failures = await standin(), await standin()
    async with raw_server(_record) as hook:
        policy = DeliveryPolicy(
            retries=0,
            backoff_seconds=0.01,
            dead_letter_function=FAILURES,
            on_failure=Target(url=f"http://127.0.0.1:{hook.port}/failed"),
        )
        served = await serve(
            functions=[FunctionEntry(HELLO, delivery=policy), FunctionEntry(FAILURES)]
        )
        served.platform.set_instances(HELLO, [worker.instance()])
        served.platform.set_instances(FAILURES, [failures.instance()])
        await served.client.post(INVOKE, json={"raise": "boom"}, **EVENT)
        await wait_for(lambda: failures.received and hook.requests)
    posted = json.loads(hook.requests[0].partition(b"\r\n\r\n")[2])
    assert posted == failures.received[0].event
    assert posted["requestContext"]["condition"] == "RetriesExhausted"


async def test_an_event_older_than_its_maximum_age_is_not_tried_again(
    serve: StartGateway, standin: MakeStandIn
) -> None:
    worker, failures = await standin(), await standin()
    # A retry 120 s out would make the event older than its 60 s maximum age.
    policy = DeliveryPolicy(
        retries=2, backoff_seconds=120, max_event_age_seconds=60, dead_letter_function=FAILURES
    )
    served = await serve(functions=[FunctionEntry(HELLO, delivery=policy), FunctionEntry(FAILURES)])
    served.platform.set_instances(HELLO, [worker.instance()])
    served.platform.set_instances(FAILURES, [failures.instance()])
    await served.client.post(INVOKE, json={"raise": "old"}, **EVENT)
    await wait_for(lambda: failures.received)
    assert len(worker.received) == 1
    assert failures.received[0].event["requestContext"]["condition"] == "EventAgeExceeded"
