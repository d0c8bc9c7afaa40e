"""The announcement: a Function's Deployment pod tells the operator, once its runtime is ready,
that it serves, so the gateway can use it before the kubelet reports the pod (the announce
contract: one ``POST /announce/NAMESPACE/NAME`` with the Function's announcement key).

``__main__.serve`` starts ``announce`` once the server listens, when the operator set the three
variables of ``VARIABLES`` and ``KEY`` (which ``__main__.main`` takes out of the environment
before any worker starts, and hands over as ``key``); without any of them (local mode, a warm
pool's pods, a plain ``python -m kubelambda_runtime``, a Function whose optional key Secret is
gone) it does nothing. Failing is never an error of the runtime: the EndpointSlice still brings
the pod to the gateway, ~300 ms later.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from kubelambda_runtime.server.ready import settled

URL = "KUBELAMBDA_ANNOUNCE_URL"
KEY = "KUBELAMBDA_ANNOUNCE_KEY"  # given as ``key``: no longer in the environment
POD_NAME = "KUBELAMBDA_POD_NAME"
POD_IP = "KUBELAMBDA_POD_IP"
VARIABLES = (URL, POD_NAME, POD_IP)

# The whole exchange once the runtime is ready: what is left of resolving the host, connecting,
# sending and reading the status line. Longer, and the EndpointSlice would have brought the pod.
EXCHANGE_SECONDS = 2.0
# The operator's key is a few dozen characters; a value much larger is not one.
MAX_TOKEN_BYTES = 16 * 1024
# Only the status line is read (the stream's buffer bound, so a line longer fails).
MAX_STATUS_LINE = 1024

_SAFE_IN_HEAD = frozenset(range(0x21, 0x7F))  # no spaces, controls or non-ASCII in a header


class Target(NamedTuple):
    """Where the announcement goes, from an ``http://host[:port]/path`` URL."""

    url: str
    host: str  # to resolve (an IPv6 literal without its brackets)
    port: int
    authority: str  # the Host header: host[:port] as written
    path: str


def parse_url(url: str) -> Target:
    """The target of ``url``; ValueError naming what is wrong (only plain http: the contract's
    endpoint is the operator's in-cluster Service, and the token is what authenticates)."""
    scheme = "http://"
    if not url.startswith(scheme):
        raise ValueError("only http:// URLs are supported")
    authority, slash, rest = url[len(scheme) :].partition("/")
    path = slash + rest if slash else "/"
    if not authority or "@" in authority or not _printable(authority + path):
        raise ValueError("not a URL of the form http://host[:port]/path")
    if authority.startswith("["):
        host, bracket, after = authority[1:].partition("]")
        if not bracket or (after and not after.startswith(":")):
            raise ValueError("not a URL of the form http://host[:port]/path")
        port_text = after[1:]
    else:
        host, _, port_text = authority.partition(":")
    if not host or (port_text and not port_text.isdigit()) or int(port_text or 80) > 65535:
        raise ValueError("not a URL of the form http://host[:port]/path")
    return Target(url, host, int(port_text or 80), authority, path)


def request(*, target: Target, token: bytes, pod: str, ip: str, port: int) -> bytes:
    """The whole request: one POST of the pod's name, address and invoke port, authenticated by
    its token, on a connection that closes after the answer."""
    body = json.dumps({"pod": pod, "ip": ip, "port": port}).encode()
    head = (
        f"POST {target.path} HTTP/1.1\r\n"
        f"Host: {target.authority}\r\n"
        f"Authorization: Bearer {token.decode('ascii')}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n"
        "\r\n"
    )
    return head.encode("ascii") + body


def prepare(environment: Mapping[str, str], *, key: str, port: int) -> tuple[Target, bytes] | None:
    """Where to announce and the request to send, from ``environment`` and ``key``; None when
    they do not ask for an announcement, or (after one line on stderr) when it cannot be made."""
    if not key or not all(environment.get(name) for name in VARIABLES):
        return None
    url = environment[URL]
    try:
        target = parse_url(url)
    except ValueError as exc:
        _say(url, f"{URL} is not usable: {exc}")
        return None
    token = key.strip()  # a Secret made from a file may end in a newline
    # Printable ASCII, so as many bytes as characters; never echoed (it is a secret).
    if not token or len(token) > MAX_TOKEN_BYTES or not _printable(token):
        _say(url, f"{KEY} does not hold a token")
        return None
    pod, ip = environment[POD_NAME], environment[POD_IP]
    return target, request(target=target, token=token.encode("ascii"), pod=pod, ip=ip, port=port)


async def announce(
    environment: Mapping[str, str],
    *,
    key: str,
    port: int,
    health: Callable[[], str],
    boots: Callable[[], Sequence[asyncio.Future[Any]]],
    seconds: float = EXCHANGE_SECONDS,
) -> bool:
    """Announce this pod once ``health`` is "ready" (never after a failed init); True when the
    operator answered 2xx. Any failure is one line on stderr naming the URL, and False."""
    prepared = prepare(environment, key=key, port=port)
    if prepared is None:
        return False
    target, message = prepared
    url = target.url
    loop = asyncio.get_running_loop()
    # Resolved while the handler's init runs: the name service is off the critical path.
    resolving = asyncio.ensure_future(
        loop.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    )
    try:
        if await settled(health=health, boots=boots) != "ready":
            return False
        async with asyncio.timeout(seconds):
            status_line = await _exchange(message, addresses=await resolving)
    except TimeoutError:
        _say(url, f"no answer within {seconds:g} s")
        return False
    except (OSError, EOFError, asyncio.LimitOverrunError) as exc:  # refused, unresolvable, cut
        _say(url, f"{type(exc).__name__}: {exc}")
        return False
    finally:
        if resolving.done() and not resolving.cancelled():
            resolving.exception()  # retrieved: an init that failed never looked at it
        resolving.cancel()
    words = status_line.split(None, 2)
    if len(words) >= 2 and words[0].startswith(b"HTTP/1.") and words[1][:1] == b"2":
        return True
    _say(url, f"answered {status_line.strip()[:200].decode('latin-1')!r}")
    return False


async def _exchange(message: bytes, *, addresses: Sequence[Any]) -> bytes:
    """Send ``message`` to the first of ``addresses`` that accepts; the answer's status line."""
    sock = await _connect(addresses)
    reader, writer = await asyncio.open_connection(sock=sock, limit=MAX_STATUS_LINE)
    try:
        writer.write(message)
        await writer.drain()
        return await reader.readuntil(b"\n")
    finally:
        writer.close()


async def _connect(addresses: Sequence[Any]) -> socket.socket:
    """A socket connected to the first address that accepts (a name may have an IPv6 and an
    IPv4 address, and the server listen on one only)."""
    loop = asyncio.get_running_loop()
    error: OSError = OSError(f"no address to connect to in {addresses!r}")
    for family, kind, proto, _, address in addresses:
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            await loop.sock_connect(sock, address)
        except OSError as exc:
            sock.close()
            error = exc
        except BaseException:
            sock.close()
            raise
        else:
            return sock
    raise error


def _printable(text: str) -> bool:
    return all(ord(char) in _SAFE_IN_HEAD for char in text)


def _say(url: str, why: str) -> None:
    sys.stderr.write(f"kubelambda_runtime: not announced to {url}: {why}\n")
    sys.stderr.flush()
