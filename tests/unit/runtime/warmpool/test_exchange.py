"""The pool port's HTTP (warmpool/exchange.py), over a socket pair: requests in pieces, the
bounds, and a bearer token that leaves only its hash behind."""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Iterator

import pytest

from kubelambda_runtime.warmpool.exchange import MAX_HEAD_BYTES, Exchange, Request, answer
from kubelambda_runtime.warmpool.specialization import Refused


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    yield ours, theirs
    ours.close()
    theirs.close()


def _receive(
    pair: tuple[socket.socket, socket.socket], pieces: list[bytes], *, max_body: int = 100
) -> tuple[Request | None, Exchange]:
    ours, theirs = pair
    exchange = Exchange(max_body=max_body)
    request = None
    for piece in pieces:
        theirs.sendall(piece)
        request = exchange.receive(ours)
    return request, exchange


def _until_whole(exchange: Exchange, sock: socket.socket) -> Request:
    while (request := exchange.receive(sock)) is None:
        pass
    return request


def test_a_request_in_pieces(pair: tuple[socket.socket, socket.socket]) -> None:
    head = b"POST /_kubelambda/specialize?x=1 HTTP/1.1\r\nHost: p\r\nContent-Length: 11\r\n\r\n"
    request, _ = _receive(pair, [head[:10], head[10:] + b"hello", b" world"])
    assert request == Request(
        "POST",
        "/_kubelambda/specialize",
        {"host": "p", "content-length": "11"},
        bytearray(b"hello world"),
        None,
    )


def test_the_bearer_token_is_hashed_and_overwritten(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    token = b"s3cret-token-value"
    head = b"GET /healthz HTTP/1.1\r\nauthorization:  Bearer " + token + b" \r\nA: b\r\n\r\n"
    request, exchange = _receive(pair, [head])
    assert request is not None
    assert request.bearer_sha256 == hashlib.sha256(token).digest()
    assert request.headers == {"a": "b"}
    assert token not in exchange._head


@pytest.mark.parametrize(
    ("header", "digest"),
    [
        (b"Basic abc", None),
        (b"Bearer", None),
        (b"bearer abc", hashlib.sha256(b"abc").digest()),
    ],
)
def test_only_a_bearer_token_counts(
    pair: tuple[socket.socket, socket.socket], header: bytes, digest: bytes | None
) -> None:
    request, _ = _receive(pair, [b"GET / HTTP/1.1\r\nAuthorization: " + header + b"\r\n\r\n"])
    assert request is not None
    assert request.bearer_sha256 == digest


@pytest.mark.parametrize(
    ("data", "status", "words"),
    [
        (b"GET / HTTP/1.1\r\nContent-Length: 101\r\n\r\n", 413, "over the limit of 100"),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 400, "Content-Length"),
        (b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400, "malformed Content-Length"),
        (b"GET /\r\n\r\n", 400, "malformed request line"),
        (b"GET / SPDY/3\r\n\r\n", 400, "unsupported protocol"),
        (b"GET / HTTP/1.1\r\nno colon\r\n\r\n", 400, "malformed header"),
        (b"GET / HTTP/1.1\r\nX: " + b"a" * MAX_HEAD_BYTES, 400, "head is over"),
    ],
)
def test_a_bad_request_is_refused(
    pair: tuple[socket.socket, socket.socket], data: bytes, status: int, words: str
) -> None:
    ours, theirs = pair
    exchange = Exchange(max_body=100)
    theirs.sendall(data)
    with pytest.raises(Refused) as refused:
        _until_whole(exchange, ours)
    assert (refused.value.status, words in str(refused.value)) == (status, True)


def test_a_caller_that_leaves_early(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, theirs = pair
    exchange = Exchange(max_body=100)
    theirs.sendall(b"GET / HT")
    assert exchange.receive(ours) is None
    theirs.close()
    with pytest.raises(ConnectionError):
        exchange.receive(ours)


def test_an_answer_closes_the_connection() -> None:
    assert answer(409, {"error": "x"}) == (
        b"HTTP/1.1 409 Conflict\r\ncontent-type: application/json\r\ncontent-length: 14\r\n"
        b'connection: close\r\n\r\n{"error": "x"}'
    )


def test_a_body_is_read_only_once_admitted(pair: tuple[socket.socket, socket.socket]) -> None:
    seen: list[tuple[str, str, bytes | None]] = []

    def admit(method: str, path: str, bearer_sha256: bytes | None) -> None:
        seen.append((method, path, bearer_sha256))
        raise Refused(409, "specialised already", state="specialized")

    ours, theirs = pair
    exchange = Exchange(max_body=1 << 20, admit=admit)
    theirs.sendall(
        b"POST /x HTTP/1.1\r\nAuthorization: Bearer t\r\nContent-Length: 1048576\r\n\r\n"
    )
    with pytest.raises(Refused) as refused:
        exchange.receive(ours)  # the head alone: the body never came
    assert refused.value.document() == {"error": "specialised already", "state": "specialized"}
    assert seen == [("POST", "/x", hashlib.sha256(b"t").digest())]
