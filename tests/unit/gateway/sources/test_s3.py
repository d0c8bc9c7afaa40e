"""The S3 notification endpoint: token, probe, bad bodies, one invocation per record and
matching Trigger, the Trigger's delivery policy, 503 when full, and acknowledged events
surviving a gateway restart with a state directory."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from kubelambda.api.identity import FunctionKey
from kubelambda.clock import SystemClock
from kubelambda.delivery.jobs import DeliveryPolicy
from kubelambda.delivery.store import MemoryDeliveryStore
from kubelambda.gateway.exceptions import BadRequest, Unauthorized
from kubelambda.gateway.http import Request
from kubelambda.gateway.metrics import GatewayMetrics
from kubelambda.gateway.platform import Instance
from kubelambda.gateway.routing import BucketRoute, FunctionEntry, RoutingTable
from kubelambda.gateway.settings import GatewaySettings
from kubelambda.gateway.sources.s3 import S3_EVENTS_PATH, BucketEvents, record_id
from unit.gateway.serving import MakeStandIn, Served, StartGateway, raw_server, wait_for

pytestmark = pytest.mark.anyio

TOKEN = "s3-secret-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}
THUMBS = FunctionKey("default", "thumbs")
INDEX = FunctionKey("media", "index")
LETTERS = FunctionKey("default", "letters")
QUICK = DeliveryPolicy(retries=2, backoff_seconds=0.01)


def minio_body(*keys: str, bucket: str = "images", event: str = "s3:ObjectCreated:Put") -> Any:
    """MinIO's webhook body (one record per key, as keys are in MinIO's encoding)."""
    records = [
        {
            "eventVersion": "2.0",
            "eventSource": "minio:s3",
            "awsRegion": "",
            "eventTime": "2024-05-18T07:34:32.123456789Z",
            "eventName": event,
            "userIdentity": {"principalId": "minioadmin"},
            "requestParameters": {"sourceIPAddress": "127.0.0.1"},
            "responseElements": {"x-amz-request-id": "17D0E5F8A3B2C1D0"},
            "s3": {
                "s3SchemaVersion": "1.0",
                "configurationId": "Config",
                "bucket": {"name": bucket, "ownerIdentity": {"principalId": "minioadmin"}},
                "object": {"key": key, "size": 42, "eTag": "b7ce786c", "sequencer": "17D0"},
            },
        }
        for key in keys
    ]
    return {"EventName": event, "Key": f"{bucket}/x", "Records": records}


def table(*buckets: BucketRoute, functions: tuple[FunctionKey, ...] = (THUMBS,)) -> RoutingTable:
    entries = [FunctionEntry(key, delivery=QUICK) for key in functions]
    return RoutingTable(functions=entries, buckets=buckets)


def job_files(directory: Path) -> list[Path]:
    return list(directory.glob("*.job"))


def settings(**overrides: Any) -> GatewaySettings:
    values: dict[str, Any] = {
        "s3_notification_token": TOKEN,
        "hold_timeout_seconds": 0.05,
        "throttle_retry_max_seconds": 0.05,
        "wake_interval_seconds": 0.05,
    }
    values.update(overrides)
    return GatewaySettings(**values)


async def bucket_gateway(serve: StartGateway, routes: RoutingTable, **overrides: Any) -> Served:
    # The functions from the start: delivery (of events a state directory kept) begins
    # as the gateway starts, and drops events for functions it does not know.
    served = await serve(
        functions=routes.functions.values(), routes=(), settings=settings(**overrides)
    )
    served.gateway.set_routes(routes)
    return served


async def test_the_probe_answers_without_a_token(serve: StartGateway) -> None:
    served = await bucket_gateway(serve, table())
    answer = await served.client.head(S3_EVENTS_PATH)
    assert answer.status_code == 200
    answer = await served.client.get(S3_EVENTS_PATH, headers=AUTH)
    assert answer.status_code == 405
    assert answer.headers["allow"] == "HEAD, POST"


@pytest.mark.parametrize(
    ("authorization", "status", "message"),
    [
        (None, 401, "missing bearer token"),
        ("Bearer", 401, "missing bearer token"),
        (f"Basic {TOKEN}", 401, "missing bearer token"),
        ("Bearer not-the-token", 401, "wrong bearer token"),
        (f"Bearer {TOKEN}x", 401, "wrong bearer token"),
        (f"Bearer {TOKEN}", 200, None),
        (f"bearer {TOKEN}", 200, None),  # the scheme is case-insensitive (RFC 9110)
    ],
)
async def test_the_bearer_token_guards_notifications(
    serve: StartGateway, authorization: str | None, status: int, message: str | None
) -> None:
    served = await bucket_gateway(serve, table())
    headers = {"authorization": authorization} if authorization is not None else {}
    answer = await served.client.post(S3_EVENTS_PATH, json=minio_body("a"), headers=headers)
    assert answer.status_code == status
    if message is not None:
        assert answer.headers["www-authenticate"].startswith("Bearer")
        assert answer.json()["errorType"] == "UnauthorizedException"
        assert message in answer.json()["message"]


def direct(token: str | None = None) -> BucketEvents:
    clock = SystemClock()
    return BucketEvents(
        routes=table,
        store=MemoryDeliveryStore(capacity=10, clock=clock),
        metrics=GatewayMetrics(load=dict),
        clock=clock,
        settings=GatewaySettings(s3_notification_token=token),
    )


def request(body: bytes, *, client: str, headers: dict[str, str] | None = None) -> Request:
    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    scope = {
        "type": "http",
        "method": "POST",
        "path": S3_EVENTS_PATH,
        "headers": [(k.encode(), v.encode()) for k, v in (headers or {}).items()],
        "client": (client, 40000),
    }
    made = Request.from_scope(scope, receive, received=0.0)
    made.body = body
    return made


@pytest.mark.parametrize(
    ("client", "status"), [("127.0.0.1", 200), ("::1", 200), ("10.0.0.7", 401)]
)
async def test_without_a_token_only_loopback_may_post(client: str, status: int) -> None:
    handler = direct(token=None)
    body = request(json.dumps(minio_body("a")).encode(), client=client)
    if status == 401:
        with pytest.raises(Unauthorized, match="no S3 notification token configured"):
            await handler(body)
    else:
        assert (await handler(body)).status == status


async def test_a_token_applies_to_loopback_too() -> None:
    with pytest.raises(Unauthorized, match="missing bearer token"):
        await direct(token=TOKEN)(request(json.dumps(minio_body("a")).encode(), client="::1"))


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"{not json", "notification body is not JSON"),
        (b"[" * 200_000, "notification body is not JSON"),
        (b"[1, 2]", "notification body is not a JSON object"),
        (b"{}", "notification body has no Records"),
        (b'{"Records": []}', "Records is empty"),
        (b'{"Records": [{"eventName": "s3:ObjectCreated:Put", "s3": {}}]}', "no s3.bucket.name"),
    ],
)
async def test_bad_bodies_are_refused_naming_the_problem(body: bytes, problem: str) -> None:
    with pytest.raises(BadRequest, match=problem):
        await direct(TOKEN)(request(body, client="127.0.0.1", headers=AUTH))


async def test_bad_bodies_answer_400_at_the_edge(serve: StartGateway) -> None:
    served = await bucket_gateway(serve, table())
    answer = await served.client.post(S3_EVENTS_PATH, content=b"{}", headers=AUTH)
    assert answer.status_code == 400
    assert answer.json()["message"] == "notification body has no Records"


async def test_a_minio_record_reaches_the_function_in_aws_shape(
    serve: StartGateway, standin: MakeStandIn
) -> None:
    thumbs = await standin()
    routes = table(BucketRoute(THUMBS, "images", ("s3:ObjectCreated:*",), prefix="photos/"))
    served = await bucket_gateway(serve, routes, region="eu-west-1")
    served.platform.set_instances(THUMBS, [thumbs.instance()])
    answer = await served.client.post(
        S3_EVENTS_PATH, json=minio_body("photos%2F2024%2Fmy+cat.jpg"), headers=AUTH
    )
    assert answer.status_code == 200
    assert answer.json() == {"records": 1, "deliveries": 1}
    await wait_for(lambda: thumbs.received)
    event = thumbs.received[0].event
    (record,) = event["Records"]
    assert record["eventSource"] == "aws:s3"
    assert record["eventName"] == "ObjectCreated:Put"
    assert record["awsRegion"] == "eu-west-1"
    assert record["s3"]["object"] == {
        "key": "photos/2024/my+cat.jpg",
        "size": 42,
        "eTag": "b7ce786c",
        "sequencer": "17D0",
    }
    assert record["s3"]["bucket"]["arn"] == "arn:aws:s3:::images"
    headers = thumbs.received[0].headers
    assert headers["lambda-runtime-invoked-function-arn"] == (
        "arn:aws:lambda:eu-west-1:000000000000:function:thumbs"
    )


async def test_one_invocation_per_record_and_matching_trigger(
    serve: StartGateway, standin: MakeStandIn
) -> None:
    thumbs, index = await standin(concurrency=4), await standin(concurrency=4)
    routes = table(
        BucketRoute(THUMBS, "images", ("s3:ObjectCreated:*",), suffix=".jpg"),
        BucketRoute(INDEX, "images", ("ObjectCreated:Put",), prefix="photos/"),
        BucketRoute(INDEX, "other-bucket", ("s3:ObjectCreated:*",)),
        BucketRoute(THUMBS, "images", ("s3:ObjectRemoved:*",)),
        functions=(THUMBS, INDEX),
    )
    served = await bucket_gateway(serve, routes)
    served.platform.set_instances(THUMBS, [thumbs.instance()])
    served.platform.set_instances(INDEX, [index.instance()])
    body = minio_body("photos%2Fa.jpg", "photos%2Fb.png", "c.jpg")
    answer = await served.client.post(S3_EVENTS_PATH, json=body, headers=AUTH)
    assert answer.json() == {"records": 3, "deliveries": 4}
    await wait_for(lambda: len(thumbs.received) == 2 and len(index.received) == 2)

    def keys(received: list[Any]) -> list[str]:
        events = [r.event for r in received]
        assert all(len(e["Records"]) == 1 for e in events)  # one record per invocation
        return sorted(e["Records"][0]["s3"]["object"]["key"] for e in events)

    assert keys(thumbs.received) == ["c.jpg", "photos/a.jpg"]
    assert keys(index.received) == ["photos/a.jpg", "photos/b.png"]
    ids = {r.headers["lambda-runtime-aws-request-id"] for r in thumbs.received + index.received}
    assert len(ids) == 4
    metrics = (await served.admin.get("/metrics")).text
    assert (
        'kubelambda_gateway_s3_events_accepted_total{function="thumbs",namespace="default"} 2.0'
        in metrics
    )
    assert (
        'kubelambda_gateway_s3_events_received_total{function="index",namespace="media"} 2.0'
        in metrics
    )


@pytest.mark.parametrize(
    ("key", "event"),
    [
        ("docs%2Fa.jpg", "s3:ObjectCreated:Put"),  # outside the prefix
        ("photos%2Fa.png", "s3:ObjectCreated:Put"),  # outside the suffix
        ("photos%2Fa.jpg", "s3:ObjectRemoved:Delete"),  # another event
    ],
)
async def test_records_outside_the_filters_invoke_nothing(
    serve: StartGateway, standin: MakeStandIn, key: str, event: str
) -> None:
    thumbs = await standin()
    route = BucketRoute(THUMBS, "images", ("s3:ObjectCreated:*",), prefix="photos/", suffix=".jpg")
    served = await bucket_gateway(serve, table(route))
    served.platform.set_instances(THUMBS, [thumbs.instance()])
    answer = await served.client.post(
        S3_EVENTS_PATH, json=minio_body(key, event=event), headers=AUTH
    )
    # acknowledged all the same: a 4xx would make MinIO send it again and again
    assert answer.status_code == 200
    assert answer.json() == {"records": 1, "deliveries": 0}
    assert len(served.gateway.delivery_store) == 0
    assert thumbs.received == []


async def test_a_trigger_on_a_missing_function_drops_its_records(serve: StartGateway) -> None:
    routes = table(BucketRoute(FunctionKey("default", "gone"), "images", ("s3:ObjectCreated:*",)))
    served = await bucket_gateway(serve, routes)
    answer = await served.client.post(S3_EVENTS_PATH, json=minio_body("a"), headers=AUTH)
    assert answer.json() == {"records": 1, "deliveries": 0}
    metrics = (await served.admin.get("/metrics")).text
    assert (
        'kubelambda_gateway_s3_events_accepted_total{function="gone",namespace="default"} 0.0'
        in (metrics)
    )


_FAILED = json.dumps(
    {"errorMessage": "cannot read", "errorType": "OSError", "requestId": "x", "stackTrace": []}
).encode()
_FAILING = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-amz-function-error: Unhandled\r\n"
    + b"content-length: %d\r\n\r\n" % len(_FAILED)
    + _FAILED
)


async def _fail(_: int) -> tuple[bytes, bool]:
    return _FAILING, True


async def test_the_triggers_retries_then_its_dead_letter(
    serve: StartGateway, standin: MakeStandIn
) -> None:
    letters = await standin()
    policy = DeliveryPolicy(retries=1, backoff_seconds=0.01, dead_letter_function=LETTERS)
    routes = table(
        BucketRoute(THUMBS, "images", ("s3:ObjectCreated:*",), delivery=policy),
        functions=(THUMBS, LETTERS),  # the Function's own policy (QUICK) retries twice
    )
    async with raw_server(_fail) as thumbs:
        served = await bucket_gateway(serve, routes)
        served.platform.set_instances(THUMBS, [Instance("t", "127.0.0.1", thumbs.port, 1)])
        served.platform.set_instances(LETTERS, [letters.instance()])
        await served.client.post(S3_EVENTS_PATH, json=minio_body("in%2Fbad.csv"), headers=AUTH)
        await wait_for(lambda: letters.received)
        assert len(thumbs.requests) == 2  # the first try and the Trigger's one retry
    record = letters.received[0].event
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 2
    assert record["requestPayload"]["Records"][0]["s3"]["object"]["key"] == "in/bad.csv"
    assert record["responsePayload"]["errorMessage"] == "cannot read"


@pytest.mark.parametrize("durable", [False, True], ids=["memory", "state-dir"])
async def test_a_full_store_answers_503_with_retry_after(
    serve: StartGateway, tmp_path: Path, durable: bool
) -> None:
    routes = table(BucketRoute(THUMBS, "images", ("s3:ObjectCreated:*",)))
    state = {"delivery_state_dir": tmp_path} if durable else {}
    # No instance of thumbs ever becomes ready: accepted events stay in the store.
    served = await bucket_gateway(serve, routes, delivery_queue_size=2, **state)
    answer = await served.client.post(S3_EVENTS_PATH, json=minio_body("a", "b"), headers=AUTH)
    assert answer.status_code == 200
    answer = await served.client.post(S3_EVENTS_PATH, json=minio_body("c"), headers=AUTH)
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "1"
    assert "queue is full" in answer.json()["message"]
    if durable:
        assert len(job_files(tmp_path)) == 2  # the refused one left no file


async def test_a_notification_that_could_never_fit_is_refused_once_naming_the_limit(
    serve: StartGateway,
) -> None:
    routes = table(BucketRoute(THUMBS, "images", ("s3:ObjectCreated:*",)))
    served = await bucket_gateway(serve, routes, delivery_queue_size=2)
    answer = await served.client.post(S3_EVENTS_PATH, json=minio_body("a", "b", "c"), headers=AUTH)
    assert answer.status_code == 413  # not 503: sending it again cannot help
    assert "retry-after" not in answer.headers
    assert "3 deliveries, more than the 2 the delivery queue holds" in answer.json()["message"]
    assert len(served.gateway.delivery_store) == 0
    # A notification that fits is still taken.
    answer = await served.client.post(S3_EVENTS_PATH, json=minio_body("a", "b"), headers=AUTH)
    assert answer.status_code == 200


async def test_acknowledged_events_survive_a_gateway_restart(
    serve: StartGateway, standin: MakeStandIn, tmp_path: Path
) -> None:
    routes = table(BucketRoute(THUMBS, "images", ("s3:ObjectCreated:*",)))
    first = await bucket_gateway(serve, routes, delivery_state_dir=tmp_path)
    answer = await first.client.post(
        S3_EVENTS_PATH, json=minio_body("kept%2F1.txt", "kept%2F2.txt"), headers=AUTH
    )
    assert answer.status_code == 200
    assert len(job_files(tmp_path)) == 2
    # the gateway stops before any instance of thumbs was ready
    first.gateway.shutdown()
    await first.task
    thumbs = await standin(concurrency=2)
    second = await bucket_gateway(serve, routes, delivery_state_dir=tmp_path)
    second.platform.set_instances(THUMBS, [thumbs.instance()])
    await wait_for(lambda: len(thumbs.received) == 2)
    keys = sorted(r.event["Records"][0]["s3"]["object"]["key"] for r in thumbs.received)
    assert keys == ["kept/1.txt", "kept/2.txt"]
    await wait_for(lambda: not job_files(tmp_path))


async def test_answers_are_not_held_back_by_nagle(serve: StartGateway) -> None:
    # uvicorn writes an answer's head and body separately: with Nagle's algorithm on, the
    # body waited for the client's delayed ACK, about 40 ms per notification, which capped
    # MinIO (one notification at a time) at ~22 events/s.
    served = await bucket_gateway(serve, table())
    body = json.dumps(minio_body("a")).encode()
    head = (
        f"POST {S3_EVENTS_PATH} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", served.addresses.public_port)
    try:
        started = asyncio.get_running_loop().time()
        for _ in range(20):
            writer.write(head + body)
            answer_head = await reader.readuntil(b"\r\n\r\n")
            length = int(answer_head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
        elapsed = asyncio.get_running_loop().time() - started
    finally:
        writer.close()
    assert elapsed < 0.4, f"20 notifications took {elapsed:.3f} s"


def test_an_s3_event_has_one_request_id_per_function_however_often_it_is_sent() -> None:
    """The id is the broker's message id: MinIO's retry of a notification is stored once."""

    def record(key: str, sequencer: str = "17A") -> dict[str, object]:
        return {
            "eventName": "s3:ObjectCreated:Put",
            "eventTime": "2026-12-04T10:00:00.000Z",
            "s3": {"bucket": {"name": "photos"}, "object": {"key": key, "sequencer": sequencer}},
        }

    thumbs, index = FunctionKey("media", "thumbs"), FunctionKey("media", "index")
    first = record_id(record("a.jpg"), thumbs)
    assert first == record_id(record("a.jpg"), thumbs)
    assert len({first, record_id(record("a.jpg"), index), record_id(record("b.jpg"), thumbs)}) == 3
    assert first != record_id(record("a.jpg", sequencer="17B"), thumbs)  # written again
    assert len(first) == 36 and first[14] == "5"  # a UUID, as request ids are
