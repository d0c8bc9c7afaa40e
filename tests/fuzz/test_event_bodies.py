"""Generated S3 notification bodies (AWS's and MinIO's shapes, and junk) at
/_kubelambda/events/s3, and generated FunctionNames and payloads at the Invoke API, on a real
gateway: answers are 200/202 or a 4xx whose JSON body names the problem, never a 500."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from fuzz.crd_values import JUNK
from fuzz.gateway import Answer, Running, exchange, running_gateway


@pytest.fixture(scope="module")
def gateway() -> Iterator[Running]:
    with running_gateway() as running:
        yield running


def post(gateway: Running, path: str, body: bytes, *headers: bytes) -> Answer:
    request = (
        b"POST %s HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n%s\r\n"
        % (path.encode("latin-1"), len(body), b"".join(h + b"\r\n" for h in headers))
        + body
    )
    answer, _ = exchange(gateway.port, request)
    assert answer.status is not None, "closed with no answer"
    event(f"status {answer.status}")
    assert answer.status != 500, answer.body
    assert not gateway.errors.records, [r.getMessage() for r in gateway.errors.records]
    if answer.status >= 400:
        error = json.loads(answer.body)
        assert error.get("message") or error.get("errorMessage") or error.get("Message"), error
    return answer


# --- S3 notifications --------------------------------------------------------------------

text = st.text(max_size=30)
s3_object = st.fixed_dictionaries(
    {},
    optional={
        "key": text | JUNK,
        "size": st.integers() | JUNK,
        "eTag": text,
        "sequencer": text | JUNK,
        "versionId": text,
    },
)
aws_record = st.fixed_dictionaries(
    {},
    optional={
        "eventVersion": st.just("2.1") | JUNK,
        "eventSource": st.sampled_from(["aws:s3", "minio:s3"]) | JUNK,
        "awsRegion": text | JUNK,
        "eventTime": st.sampled_from(["2026-01-02T03:04:05.000Z", "yesterday"]) | JUNK,
        "eventName": st.sampled_from(["ObjectCreated:Put", "s3:ObjectRemoved:Delete"]) | JUNK,
        "s3": st.fixed_dictionaries(
            {},
            optional={
                "bucket": st.fixed_dictionaries({}, optional={"name": text | JUNK, "arn": text})
                | JUNK,
                "object": s3_object | JUNK,
                "configurationId": text,
            },
        )
        | JUNK,
        "userIdentity": JUNK,
        "requestParameters": JUNK,
        "responseElements": JUNK,
    },
)
notifications = st.one_of(
    st.fixed_dictionaries({"Records": st.lists(aws_record | JUNK, max_size=4) | JUNK}),
    st.fixed_dictionaries(
        {
            "EventName": st.sampled_from(["s3:ObjectCreated:Put"]) | JUNK,
            "Key": st.sampled_from(["photos/in/a.jpg", "photos", "/"]) | text | JUNK,
            "Records": st.lists(aws_record | JUNK, max_size=3) | JUNK,
        }
    ),
    JUNK,
)


@given(notifications)
def test_an_s3_notification_is_taken_or_refused_by_name(gateway: Running, body: Any) -> None:
    answer = post(gateway, "/_kubelambda/events/s3", json.dumps(body).encode())
    assert answer.status in (200, 400), answer.body


@given(st.binary(max_size=200) | st.text(max_size=50).map(str.encode))
def test_an_s3_notification_that_is_not_json_is_refused(gateway: Running, body: bytes) -> None:
    answer = post(gateway, "/_kubelambda/events/s3", body)
    assert answer.status in (200, 400), answer.body


# --- the Invoke API ----------------------------------------------------------------------

names = st.one_of(
    st.sampled_from(["hello", "default.hello", "other.hello", "nothing", "", ".", "a.b.c"]),
    st.sampled_from(
        [
            "arn:aws:lambda:us-east-1:000000000000:function:hello",
            "arn:aws:lambda:us-east-1:000000000000:function:hello:$LATEST",
            "arn:aws:lambda:us-east-1:000000000000:function:hello:1",
            "arn:aws:lambda::::function:",
            "hello:$LATEST",
            "hello:prod",
            "hello:",
        ]
    ),
    st.text(max_size=80),
)
segments = names.map(lambda n: quote(n, safe="")) | names.map(lambda n: quote(n, safe=":/$%"))
payloads = st.one_of(
    JUNK.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=100),
    st.text(max_size=40).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.just(b"[" * 5000 + b"]" * 5000),
    st.just(b'"' + b"x" * 70_000 + b'"'),
)
invocation_types = st.sampled_from(
    [
        b"",
        b"X-Amz-Invocation-Type: Event",
        b"X-Amz-Invocation-Type: DryRun",
        b"X-Amz-Invocation-Type: Nonsense",
    ]
)
queries = st.sampled_from(["", "?Qualifier=%24LATEST", "?Qualifier=1", "?Qualifier=", "?x=%ZZ"])


@given(segments, queries, payloads, invocation_types)
def test_an_invocation_is_answered_or_refused_in_lambdas_shape(
    gateway: Running, name: str, query: str, payload: bytes, invocation_type: bytes
) -> None:
    path = f"/2015-03-31/functions/{name}/invocations{query}"
    answer = post(gateway, path, payload, *([invocation_type] if invocation_type else []))
    assert answer.status in (200, 202, 204, 400, 403, 404, 405, 413, 415), answer.body
    if answer.status >= 400:
        assert answer.headers.get(b"x-amzn-errortype"), answer.head
