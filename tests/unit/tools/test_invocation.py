"""`kubelambda invoke`'s client: what it sends (signed when the environment has a key, checked
with the gateway's own SigV4 verifier), and what it makes of the gateway's answers, against a
recording HTTP server on loopback."""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from kubelambda.gateway import sigv4
from kubelambda.tools.invocation import (
    InvokeError,
    Outcome,
    function_name,
    invoke,
    lambda_client,
    read_payload,
    region_of,
)
from support.waiting import free_port

KEY, SECRET = "AKIAEXAMPLE000000001", "s3cr3t/example+key"


@dataclass
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b'"ok"'


@dataclass
class Seen:
    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes


class Recorder:
    """An HTTP server on loopback answering `answer` and keeping every request."""

    def __init__(self) -> None:
        self.answer = Answer()
        self.seen: list[Seen] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                recorder.seen.append(Seen("POST", self.path, list(self.headers.items()), body))
                answer = recorder.answer
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def gateway() -> Iterator[Recorder]:
    recorder = Recorder()
    yield recorder
    recorder.close()


def _client(url: str, environ: dict[str, str]):  # type: ignore[no-untyped-def]
    return lambda_client(url, region="eu-west-1", environ=environ, max_attempts=1)


def test_with_a_key_in_the_environment_the_request_is_signed_as_the_gateway_checks(
    gateway: Recorder,
) -> None:
    client = _client(gateway.url, {"AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET})
    invoke(client, name="shop.orders", payload=b'{"item": 1}')
    (seen,) = gateway.seen
    assert seen.path == "/2015-03-31/functions/shop.orders/invocations"
    authorization = dict((k.lower(), v) for k, v in seen.headers)["authorization"]
    credential = sigv4.parse(authorization)
    assert (credential.access_key, credential.region, credential.service) == (
        KEY,
        "eu-west-1",
        "lambda",
    )
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in seen.headers]
    sigv4.verify(
        credential,
        secret=SECRET,
        method="POST",
        raw_path=seen.path,
        query="",
        headers=headers,
        body=seen.body,
        now=time.time(),
    )
    with pytest.raises(sigv4.SignatureError):
        sigv4.verify(
            credential,
            secret="not-the-secret",
            method="POST",
            raw_path=seen.path,
            query="",
            headers=headers,
            body=seen.body,
            now=time.time(),
        )


def test_without_credentials_the_request_is_unsigned(gateway: Recorder) -> None:
    invoke(_client(gateway.url, {}), name="hello", payload=b"{}")
    (seen,) = gateway.seen
    assert "authorization" not in {k.lower() for k, _ in seen.headers}


def test_a_result_and_the_log_tail_are_returned(gateway: Recorder) -> None:
    tail = "START RequestId: r1\nhello\nEND RequestId: r1\n"
    gateway.answer = Answer(
        headers={
            "x-amzn-requestid": "r1",
            "x-amz-log-result": base64.b64encode(tail.encode()).decode(),
            "content-type": "application/json",
        },
        body=b'{"statusCode": 200}',
    )
    outcome = invoke(_client(gateway.url, {}), name="hello", payload=b"{}", log_tail=True)
    assert outcome == Outcome(
        status=200, request_id="r1", payload=b'{"statusCode": 200}', log_tail=tail
    )
    headers = {k.lower(): v for k, v in gateway.seen[0].headers}
    assert headers["x-amz-log-type"] == "Tail"
    assert headers["x-amz-invocation-type"] == "RequestResponse"


def test_a_function_error_is_an_outcome_not_an_exception(gateway: Recorder) -> None:
    error = {"errorMessage": "boom", "errorType": "ValueError", "stackTrace": []}
    gateway.answer = Answer(
        headers={"x-amz-function-error": "Unhandled", "x-amzn-requestid": "r2"},
        body=json.dumps(error).encode(),
    )
    outcome = invoke(_client(gateway.url, {}), name="boom", payload=b"{}")
    assert outcome.function_error == "Unhandled"
    assert json.loads(outcome.payload) == error


def test_an_event_is_accepted_with_its_request_id(gateway: Recorder) -> None:
    gateway.answer = Answer(status=202, headers={"x-amzn-requestid": "r3"}, body=b"")
    outcome = invoke(_client(gateway.url, {}), name="worker", payload=b"{}", asynchronous=True)
    assert (outcome.status, outcome.request_id, outcome.payload) == (202, "r3", b"")
    headers = {k.lower(): v for k, v in gateway.seen[0].headers}
    assert headers["x-amz-invocation-type"] == "Event"
    assert headers.get("x-amz-log-type", "None") == "None"


def test_a_refusal_names_aws_s_error_code_and_message(gateway: Recorder) -> None:
    gateway.answer = Answer(
        status=404,
        headers={
            "x-amzn-errortype": "ResourceNotFoundException",
            "content-type": "application/json",
        },
        body=json.dumps({"Type": "User", "message": "Function not found: default/nope"}).encode(),
    )
    with pytest.raises(
        InvokeError, match=r"^ResourceNotFoundException: Function not found: default/nope$"
    ):
        invoke(_client(gateway.url, {}), name="nope", payload=b"{}")


def test_no_gateway_at_the_url_says_where_it_looked() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(
        InvokeError, match=f"cannot reach a gateway at {url}: is `kubelambda local`"
    ):
        invoke(_client(url, {}), name="hello", payload=b"{}")


def test_the_payload_is_json_a_file_or_stdin(tmp_path: Path) -> None:
    empty = io.BytesIO()
    assert read_payload('{"a": 1}', stdin=empty) == b'{"a": 1}'
    event = tmp_path / "event.json"
    event.write_bytes(b'{"from": "file"}')
    assert read_payload(f"@{event}", stdin=empty) == b'{"from": "file"}'
    assert read_payload("@-", stdin=io.BytesIO(b"[1, 2]")) == b"[1, 2]"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("{nope", r"--payload '\{nope' is not JSON: Expecting property name"),
        ("@/no/such/file.json", r"--payload @/no/such/file.json: cannot read /no/such/file.json"),
        ("", "is not JSON"),
    ],
)
def test_a_payload_that_is_not_json_is_refused_before_calling(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        read_payload(value, stdin=io.BytesIO())


@pytest.mark.parametrize(
    ("name", "namespace", "expected"),
    [
        ("hello", None, "hello"),
        ("shop.orders", None, "shop.orders"),
        ("hello", "shop", "shop.hello"),
        (
            "arn:aws:lambda:us-east-1:000000000000:function:hello",
            None,
            "arn:aws:lambda:us-east-1:000000000000:function:hello",
        ),
    ],
)
def test_the_function_name(name: str, namespace: str | None, expected: str) -> None:
    assert function_name(name, namespace) == expected


@pytest.mark.parametrize("name", ["shop.orders", "arn:aws:lambda:us-east-1:0:function:x"])
def test_a_namespace_goes_only_with_a_plain_name(name: str) -> None:
    with pytest.raises(ValueError, match="--namespace goes with a plain NAME"):
        function_name(name, "other")


@pytest.mark.parametrize(
    ("given", "environ", "expected"),
    [
        ("ap-south-1", {"AWS_REGION": "eu-west-1"}, "ap-south-1"),
        (None, {"AWS_REGION": "eu-west-1", "AWS_DEFAULT_REGION": "us-west-2"}, "eu-west-1"),
        (None, {"AWS_DEFAULT_REGION": "us-west-2"}, "us-west-2"),
        (None, {}, "us-east-1"),
    ],
)
def test_the_region(given: str | None, environ: dict[str, str], expected: str) -> None:
    assert region_of(given, environ) == expected
