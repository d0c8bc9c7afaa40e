"""Asynchronous delivery in the trace the event was accepted in: every try of an Event
invocation, and the records sent on to destinations and dead letters (a function, a URL), carry
the caller's X-Amzn-Trace-Id (or traceparent), in-process and through a gateway's Invoke API."""

from __future__ import annotations

import re

import pytest

from kubelambda.api.identity import FunctionKey
from kubelambda.delivery.jobs import DeliveryJob, DeliveryPolicy, Target
from kubelambda.dispatcher.gateway_call import GatewayCall
from kubelambda.gateway.access import AccessKey, StaticAccessKeys
from kubelambda.gateway.routing import FunctionEntry
from kubelambda.gateway.settings import GatewaySettings
from kubelambda.gateway.upstream import UpstreamPool
from unit.gateway.serving import HELLO, OK, MakeStandIn, StartGateway, raw_server, wait_for

pytestmark = pytest.mark.anyio

FAILURES = FunctionKey("default", "failures")
SUCCESSES = FunctionKey("default", "successes")
INVOKE = "/2015-03-31/functions/hello/invocations"
TRACE = "5759e988bd862e3fe1be46a994272793"
ROOT = "1-5759e988-bd862e3fe1be46a994272793"
PARENT = "53995c3f42cd8ad8"


def fields(header: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in header.split(";"))


def root(headers: dict[str, str]) -> str:
    return fields(headers["x-amzn-trace-id"])["Root"]


async def _ok(_: int) -> tuple[bytes, bool]:
    return OK, True


async def test_retries_and_failure_records_keep_the_callers_trace(
    serve: StartGateway, standin: MakeStandIn
) -> None:
    worker, failures = await standin(concurrency=2), await standin(concurrency=2)
    async with raw_server(_ok) as hook:
        policy = DeliveryPolicy(
            retries=2,
            backoff_seconds=0.01,
            dead_letter_function=FAILURES,
            on_failure=Target(url=f"http://127.0.0.1:{hook.port}/failed"),
        )
        served = await serve(
            functions=[FunctionEntry(HELLO, delivery=policy), FunctionEntry(FAILURES)]
        )
        served.platform.set_instances(HELLO, [worker.instance()])
        served.platform.set_instances(FAILURES, [failures.instance()])
        answer = await served.client.post(
            INVOKE,
            json={"raise": "boom"},
            headers={
                "x-amz-invocation-type": "Event",
                "x-amzn-trace-id": f"Root={ROOT};Parent={PARENT};Sampled=1",
            },
        )
        assert answer.status_code == 202
        await wait_for(lambda: failures.received and hook.requests)
    # The first try and both retries: the caller's trace, parent and sampling decision.
    assert len(worker.received) == 3
    for received in worker.received:
        assert fields(received.headers["x-amzn-trace-id"]) == {
            "Root": ROOT,
            "Parent": PARENT,
            "Sampled": "1",
        }
    assert root(failures.received[0].headers) == ROOT
    head = hook.requests[0].partition(b"\r\n\r\n")[0].decode("latin-1")
    posted = dict(line.split(": ", 1) for line in head.split("\r\n")[1:] if ": " in line)
    assert root(posted) == ROOT


async def test_a_success_record_joins_the_callers_w3c_trace(
    serve: StartGateway, standin: MakeStandIn
) -> None:
    worker, successes = await standin(), await standin()
    policy = DeliveryPolicy(backoff_seconds=0.01, on_success=Target(function=SUCCESSES))
    served = await serve(
        functions=[FunctionEntry(HELLO, delivery=policy), FunctionEntry(SUCCESSES)]
    )
    served.platform.set_instances(HELLO, [worker.instance()])
    served.platform.set_instances(SUCCESSES, [successes.instance()])
    answer = await served.client.post(
        INVOKE,
        json={"n": 1},
        headers={"x-amz-invocation-type": "Event", "traceparent": f"00-{TRACE}-{PARENT}-01"},
    )
    assert answer.status_code == 202
    await wait_for(lambda: successes.received)
    assert fields(worker.received[0].headers["x-amzn-trace-id"]) == {
        "Root": ROOT,
        "Parent": PARENT,
        "Sampled": "1",
    }
    assert root(successes.received[0].headers) == ROOT


async def test_an_event_without_a_trace_keeps_the_one_it_was_accepted_in(
    serve: StartGateway, standin: MakeStandIn
) -> None:
    worker, failures = await standin(concurrency=2), await standin(concurrency=2)
    policy = DeliveryPolicy(retries=2, backoff_seconds=0.01, dead_letter_function=FAILURES)
    served = await serve(functions=[FunctionEntry(HELLO, delivery=policy), FunctionEntry(FAILURES)])
    served.platform.set_instances(HELLO, [worker.instance()])
    served.platform.set_instances(FAILURES, [failures.instance()])
    for _ in range(2):
        answer = await served.client.post(
            INVOKE, json={"raise": "boom"}, headers={"x-amz-invocation-type": "Event"}
        )
        assert answer.status_code == 202
    await wait_for(lambda: len(failures.received) == 2)
    assert len(worker.received) == 6
    by_event: dict[str, set[str]] = {}
    for received in worker.received:
        request_id = received.headers["lambda-runtime-aws-request-id"]
        by_event.setdefault(request_id, set()).add(root(received.headers))
    # Each event one trace, kept over its retries; the two events two traces.
    assert [len(roots) for roots in by_event.values()] == [1, 1]
    first, second = (roots.pop() for roots in by_event.values())
    assert first != second
    assert {root(r.headers) for r in failures.received} == {first, second}


KEY, SECRET = "AKIADISPATCHER000001", "dispatcher/secret"


async def test_a_try_through_the_invoke_api_sends_the_jobs_trace(
    serve: StartGateway, standin: MakeStandIn
) -> None:
    served = await serve(
        functions=[FunctionEntry(HELLO)],
        settings=GatewaySettings(invoke_auth=True),
        access_keys=StaticAccessKeys([AccessKey(id=KEY, secret=SECRET, grants=("default/*",))]),
    )
    instance = await standin()
    served.platform.set_instances(HELLO, [instance.instance()])
    job = DeliveryJob(
        id="0f1e2d3c-4b5a-4978-8a6b-5c4d3e2f1a0b",
        payload=b"{}",
        policy=DeliveryPolicy(),
        invoked_arn="arn:aws:lambda:us-east-1:000000000000:function:hello",
        enqueued_at=0.0,
        function=HELLO,
        trace=f"Root={ROOT};Parent={PARENT};Sampled=0",
    )
    pool = UpstreamPool()
    try:
        call = GatewayCall(
            url=served.addresses.public_url,
            pool=pool,
            timeout_seconds=10,
            credentials=(KEY, SECRET),
        )
        # Signed as boto3 signs (the trace header outside the signature, as botocore leaves
        # it): the gateway takes it, and the function joins the job's trace.
        outcome = await call(job)
        assert (outcome.status, outcome.function_error) == (200, None)
        [received] = instance.received
        assert fields(received.headers["x-amzn-trace-id"]) == {
            "Root": ROOT,
            "Parent": PARENT,
            "Sampled": "0",
        }
    finally:
        await pool.aclose()


async def test_an_event_without_a_trace_is_stored_with_a_new_root_alone(
    serve: StartGateway,
) -> None:
    # No parent and no sampling decision made up: each try's span is a root of the event's
    # trace, and the sampler decides (a Sampled=0 would leave every such event unsampled).
    served = await serve(settings=GatewaySettings(invoke_auth=False, delivery_workers=0))
    answer = await served.client.post(INVOKE, json={}, headers={"x-amz-invocation-type": "Event"})
    assert answer.status_code == 202
    job = await served.gateway.delivery_store.take()
    assert job.trace is not None
    assert re.fullmatch(r"Root=1-[0-9a-f]{8}-[0-9a-f]{24}", job.trace), job.trace
