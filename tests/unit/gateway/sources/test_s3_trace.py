"""The trace of a bucket event's invocation (gateway/sources/s3.py): a new one per record, shared
by every function the record goes to, unless the S3 server sent its own, which all join."""

from __future__ import annotations

from typing import Any

import pytest

from kubelambda.gateway.routing import BucketRoute
from kubelambda.gateway.sources.s3 import S3_EVENTS_PATH
from unit.gateway.serving import MakeStandIn, StartGateway, wait_for
from unit.gateway.sources.test_s3 import (
    AUTH,
    INDEX,
    THUMBS,
    bucket_gateway,
    minio_body,
    table,
)

pytestmark = pytest.mark.anyio

ROOT = "1-5759e988-bd862e3fe1be46a994272793"
PARENT = "53995c3f42cd8ad8"


def roots(received: list[Any]) -> dict[str, str]:
    """Each invocation's object key and the Root of the trace it ran in."""
    return {
        r.event["Records"][0]["s3"]["object"]["key"]: dict(
            part.split("=", 1) for part in r.headers["x-amzn-trace-id"].split(";")
        )["Root"]
        for r in received
    }


async def _two_functions(serve: StartGateway, standin: MakeStandIn) -> tuple[Any, Any, Any]:
    thumbs, index = await standin(concurrency=4), await standin(concurrency=4)
    routes = table(
        BucketRoute(THUMBS, "images", ("s3:ObjectCreated:*",)),
        BucketRoute(INDEX, "images", ("s3:ObjectCreated:*",)),
        functions=(THUMBS, INDEX),
    )
    served = await bucket_gateway(serve, routes)
    served.platform.set_instances(THUMBS, [thumbs.instance()])
    served.platform.set_instances(INDEX, [index.instance()])
    return served, thumbs, index


async def test_each_record_starts_a_trace_its_functions_share(
    serve: StartGateway, standin: MakeStandIn
) -> None:
    served, thumbs, index = await _two_functions(serve, standin)
    answer = await served.client.post(
        S3_EVENTS_PATH, json=minio_body("a.jpg", "b.jpg"), headers=AUTH
    )
    assert answer.json() == {"records": 2, "deliveries": 4}
    await wait_for(lambda: len(thumbs.received) == 2 and len(index.received) == 2)
    by_thumbs, by_index = roots(thumbs.received), roots(index.received)
    assert by_thumbs == by_index
    assert by_thumbs["a.jpg"] != by_thumbs["b.jpg"]


async def test_a_trace_the_server_sent_is_kept(serve: StartGateway, standin: MakeStandIn) -> None:
    served, thumbs, index = await _two_functions(serve, standin)
    answer = await served.client.post(
        S3_EVENTS_PATH,
        json=minio_body("a.jpg", "b.jpg"),
        headers={**AUTH, "x-amzn-trace-id": f"Root={ROOT};Parent={PARENT};Sampled=1"},
    )
    assert answer.status_code == 200
    await wait_for(lambda: len(thumbs.received) == 2 and len(index.received) == 2)
    for received in thumbs.received + index.received:
        fields = dict(part.split("=", 1) for part in received.headers["x-amzn-trace-id"].split(";"))
        assert fields == {"Root": ROOT, "Parent": PARENT, "Sampled": "1"}
