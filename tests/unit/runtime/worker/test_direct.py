"""A worker's end of a handed-over connection: which requests it answers, and what it gives back."""

from __future__ import annotations

import socket
import threading

import pytest

from kubelambda_runtime.wire.invocation import INVOKE_PATH
from kubelambda_runtime.worker.direct import Held


def invoke(body: bytes = b"{}", *, extra: bytes = b"") -> bytes:
    return (
        b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nLambda-Runtime-Aws-Request-Id: r\r\n"
        b"%s\r\n%s" % (INVOKE_PATH.encode(), len(body), extra, body)
    )


@pytest.fixture
def pair():
    client, served = socket.socketpair()
    served.setblocking(False)  # as the server's descriptor is
    yield client, Held(served, 7, max_body=100)
    client.close()
    served.close()


def test_an_invocation_is_read_whole_then_the_next(pair):
    client, held = pair
    raw = invoke(b'{"a": 1}')
    client.sendall(raw[:20])
    assert held.read() is None and not held.give_back
    client.sendall(raw[20:])
    request = held.read()
    assert request is not None
    assert request.body == b'{"a": 1}' and request.keep_alive
    assert request.headers[b"lambda-runtime-aws-request-id"] == b"r"
    assert held.raw == b""  # answered bytes are not given back
    client.sendall(invoke(b"[]", extra=b"Connection: close\r\n"))
    second = held.read()
    assert second is not None and second.body == b"[]" and not second.keep_alive


def test_nothing_to_read_yet_is_not_an_end(pair):
    _, held = pair
    assert held.read() is None and not held.give_back


@pytest.mark.parametrize(
    "raw",
    [
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % INVOKE_PATH.encode(),
        b"POST /other HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}",
        invoke(b"x" * 101),  # over the body limit: the server answers 413
        invoke(extra=b"Expect: 100-continue\r\n"),
        invoke() + invoke(),  # pipelined: the server keeps them in order
        b"NOT HTTP\r\n\r\n",
    ],
    ids=["healthz", "wrong-method", "other-path", "too-large", "expect", "pipelined", "garbage"],
)
def test_anything_but_one_plain_invocation_goes_back_with_every_byte(pair, raw):
    client, held = pair
    client.sendall(raw)
    assert held.read() is None
    assert held.give_back
    assert bytes(held.raw) == raw


def test_the_client_closing_gives_the_connection_back(pair):
    client, held = pair
    client.sendall(invoke()[:10])
    assert held.read() is None and not held.give_back
    client.shutdown(socket.SHUT_WR)
    assert held.read() is None and held.give_back
    assert bytes(held.raw) == invoke()[:10]


def test_send_writes_everything(pair):
    client, held = pair
    data = b"y" * 500_000  # more than a socket buffer: the writer waits for room
    received = bytearray()

    def drain() -> None:
        while len(received) < len(data):
            received.extend(client.recv(65536))

    reader = threading.Thread(target=drain)
    reader.start()
    assert held.send(data)
    reader.join(10)
    assert bytes(received) == data
