"""custom/runtimeapi.py on a real loopback port, spoken to as a bootstrap speaks to it: next with
Lambda's headers, response/error/init-error posts (Content-Length or chunked), and the answers
Lambda's emulator gives to requests the environment refuses."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator

import pytest

from kubelambda_runtime.custom import exchange
from kubelambda_runtime.custom.exchange import Delivery, Exchange, Outcome
from kubelambda_runtime.custom.runtimeapi import MAX_BODY, RuntimeApi

DELIVERY = Delivery(
    request_id="req-1",
    body=b'{"k": "v"}',
    headers=(
        ("Lambda-Runtime-Deadline-Ms", "1700000000000"),
        ("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:eu-west-1:1:function:f"),
        ("Content-Type", "application/json"),
    ),
)


class Api:
    def __init__(self) -> None:
        self.exchange = Exchange()
        self.drained = 0
        self.server = RuntimeApi(self.exchange, before_post=self._drained)
        self.server.start()

    def _drained(self) -> None:
        self.drained += 1

    def client(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=10)

    def request(
        self, method: str, path: str, body: bytes | None = None, **headers: str
    ) -> tuple[int, dict[str, str], bytes]:
        connection = self.client()
        try:
            connection.request(method, path, body=body, headers=headers)
            answer = connection.getresponse()
            return answer.status, dict(answer.getheaders()), answer.read()
        finally:
            connection.close()


@pytest.fixture
def api() -> Iterator[Api]:
    made = Api()
    yield made
    made.server.shutdown()
    made.server.server_close()


def invoke_in_background(api: Api) -> dict[str, Outcome]:
    """The worker's side: init, then one invocation, on a thread; its outcome lands in the dict."""
    box: dict[str, Outcome] = {}

    def run() -> None:
        assert api.exchange.wait_init(deadline=time.monotonic() + 10) is None
        box["outcome"] = api.exchange.invoke(DELIVERY, deadline=time.monotonic() + 10)

    threading.Thread(target=run, daemon=True).start()
    return box


def wait_outcome(box: dict[str, Outcome]) -> Outcome:
    end = time.monotonic() + 10
    while "outcome" not in box:
        assert time.monotonic() < end, "no outcome"
        time.sleep(0.005)
    return box["outcome"]


def test_next_answers_the_event_with_lambdas_headers_and_a_response_is_accepted(api: Api) -> None:
    box = invoke_in_background(api)
    connection = api.client()  # one keep-alive connection, as the runtime clients use
    connection.request("GET", "/2018-06-01/runtime/invocation/next")
    answer = connection.getresponse()
    assert answer.status == 200
    assert answer.read() == b'{"k": "v"}'
    assert answer.getheader("Lambda-Runtime-Aws-Request-Id") == "req-1"
    assert answer.getheader("Lambda-Runtime-Deadline-Ms") == "1700000000000"
    assert answer.getheader("Lambda-Runtime-Invoked-Function-Arn") == (
        "arn:aws:lambda:eu-west-1:1:function:f"
    )
    assert answer.getheader("Content-Type") == "application/json"
    connection.request("POST", "/2018-06-01/runtime/invocation/req-1/response", body=b'{"r": 1}')
    posted = connection.getresponse()
    assert (posted.status, json.loads(posted.read())) == (202, {"status": "OK"})
    connection.close()
    assert wait_outcome(box) == Outcome(exchange.RESPONSE, b'{"r": 1}')
    assert api.drained == 1  # the bootstrap's output was written before the answer went on


def test_a_chunked_error_post_keeps_its_body_and_error_type(api: Api) -> None:
    box = invoke_in_background(api)
    assert api.request("GET", "/2018-06-01/runtime/invocation/next")[0] == 200
    connection = api.client()
    connection.putrequest("POST", "/2018-06-01/runtime/invocation/req-1/error")
    connection.putheader("Transfer-Encoding", "chunked")
    connection.putheader("Lambda-Runtime-Function-Error-Type", "Handler.Failed")
    connection.endheaders()
    for chunk in (b'{"errorMessage": "bo', b'om", "errorType": "E"}'):
        connection.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
    connection.send(b"0\r\n\r\n")
    assert connection.getresponse().status == 202
    connection.close()
    outcome = wait_outcome(box)
    assert outcome == Outcome(
        exchange.ERROR, b'{"errorMessage": "boom", "errorType": "E"}', "Handler.Failed"
    )


def test_an_oversized_response_is_refused_with_413_and_fails_the_invocation(api: Api) -> None:
    box = invoke_in_background(api)
    assert api.request("GET", "/2018-06-01/runtime/invocation/next")[0] == 200
    status, _, body = api.request(
        "POST", "/2018-06-01/runtime/invocation/req-1/response", body=b"x" * (MAX_BODY + 1)
    )
    assert status == 413
    assert json.loads(body) == {
        "errorMessage": "Exceeded maximum allowed payload size (6291556 bytes).",
        "errorType": "RequestEntityTooLarge",
    }
    assert wait_outcome(box).kind == exchange.TOO_LARGE


def test_init_error_is_accepted_once_and_reaches_the_worker(api: Api) -> None:
    status, _, _ = api.request(
        "POST",
        "/2018-06-01/runtime/init/error",
        body=b'{"errorMessage": "no", "errorType": "Init.Failed"}',
        **{"Lambda-Runtime-Function-Error-Type": "Init.Failed"},
    )
    assert status == 202
    outcome = api.exchange.wait_init(deadline=time.monotonic() + 5)
    assert outcome == Outcome(
        exchange.INIT_ERROR, b'{"errorMessage": "no", "errorType": "Init.Failed"}', "Init.Failed"
    )


@pytest.mark.parametrize(
    ("method", "path", "status", "error_type"),
    [
        ("POST", "/2018-06-01/runtime/invocation/unknown/response", 400, "InvalidRequestID"),
        ("POST", "/2018-06-01/runtime/invocation/unknown/error", 400, "InvalidRequestID"),
        ("GET", "/2018-06-01/runtime/invocation/req-1", 404, "NotFound"),
        ("POST", "/2018-06-01/runtime/invocation/req-1/other", 404, "NotFound"),
        ("GET", "/2020-01-01/extension/event/next", 404, "NotFound"),
    ],
)
def test_refused_requests_are_answered_as_lambdas_emulator_does(
    api: Api, method: str, path: str, status: int, error_type: str
) -> None:
    answered, headers, body = api.request(method, path, body=b"{}" if method == "POST" else None)
    assert answered == status
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body)["errorType"] == error_type


def test_the_address_is_loopback_as_aws_lambda_runtime_api_gives_it(api: Api) -> None:
    host, _, port = api.server.address.partition(":")
    assert host == "127.0.0.1" and int(port) == api.server.port > 0
