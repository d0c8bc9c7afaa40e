"""The JWT routes' key cache (gateway/jwks.py): what is fetched, when, how often, and what is
kept when the issuer fails. The issuer is a fake fetcher and time a FakeClock, except for
`UrlFetch`, which is tested against a loopback server."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from kubelambda.clock import FakeClock
from kubelambda.gateway.jwks import JwksCache, JwksError, UrlFetch, discovery_url, parse_key_set
from unit.gateway.serving import raw_server, wait_for

pytestmark = pytest.mark.anyio

ISSUER = "https://issuer.example.com/realm/"
DISCOVERY = "https://issuer.example.com/realm/.well-known/openid-configuration"
JWKS_URL = "https://keys.example.com/jwks.json"

RSA_JWK = pyjwt.algorithms.RSAAlgorithm.to_jwk(
    rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key(), as_dict=True
)
EC_JWK = pyjwt.algorithms.ECAlgorithm.to_jwk(
    ec.generate_private_key(ec.SECP256R1()).public_key(), as_dict=True
)
P384_JWK = pyjwt.algorithms.ECAlgorithm.to_jwk(
    ec.generate_private_key(ec.SECP384R1()).public_key(), as_dict=True
)


def jwks(*kids: str) -> bytes:
    return json.dumps({"keys": [{**RSA_JWK, "kid": kid} for kid in kids]}).encode()


class Issuer:
    """URL -> body or exception; records calls; `gate`, when set, holds every fetch."""

    def __init__(self, documents: dict[str, bytes | Exception]) -> None:
        self.documents = documents
        self.calls: list[str] = []
        self.gate: asyncio.Event | None = None

    async def __call__(self, url: str) -> bytes:
        self.calls.append(url)
        if self.gate is not None:
            await self.gate.wait()
        answer = self.documents.get(url, ConnectionRefusedError(url))
        if isinstance(answer, Exception):
            raise answer
        return answer


def cache(issuer: Issuer, clock: FakeClock, **options: Any) -> JwksCache:
    return JwksCache(clock=clock, fetch=issuer, **options)


def test_discovery_is_at_the_issuers_well_known_path() -> None:
    assert discovery_url(ISSUER) == DISCOVERY
    assert discovery_url("https://a.example.com") == "https://a.example.com" + (
        "/.well-known/openid-configuration"
    )


async def test_without_a_jwks_url_the_openid_configuration_names_the_keys() -> None:
    issuer = Issuer({DISCOVERY: json.dumps({"jwks_uri": JWKS_URL}).encode(), JWKS_URL: jwks("k1")})
    keys = cache(issuer, FakeClock())
    key = await keys.key(issuer=ISSUER, jwks_url=None, kid="k1")
    assert key is not None and key.algorithms == {"RS256", "RS384", "RS512"}
    assert issuer.calls == [DISCOVERY, JWKS_URL]


@pytest.mark.parametrize(
    "configuration",
    [b"not json", b"[]", b"{}", json.dumps({"jwks_uri": "file:///etc/passwd"}).encode()],
    ids=["not-json", "not-an-object", "no-jwks_uri", "not-http"],
)
async def test_an_unusable_openid_configuration_gives_no_keys(
    configuration: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    issuer = Issuer({DISCOVERY: configuration, "file:///etc/passwd": jwks("k1")})
    with caplog.at_level(logging.WARNING, logger="kubelambda.gateway.jwks"):
        assert await cache(issuer, FakeClock()).key(issuer=ISSUER, jwks_url=None, kid="k1") is None
    assert issuer.calls == [DISCOVERY]
    assert DISCOVERY in caplog.text


async def test_keys_are_reused_until_the_ttl_then_refreshed_while_still_answering() -> None:
    clock = FakeClock()
    issuer = Issuer({JWKS_URL: jwks("k1")})
    keys = cache(issuer, clock, ttl_seconds=3600, max_age_seconds=7200)
    first = await keys.key(issuer=ISSUER, jwks_url=JWKS_URL, kid="k1")
    clock.advance(3599)
    assert await keys.key(issuer=ISSUER, jwks_url=JWKS_URL, kid="k1") is first
    assert len(issuer.calls) == 1
    clock.advance(2)
    issuer.gate = asyncio.Event()  # the refresh hangs: the old key answers meanwhile
    assert await keys.key(issuer=ISSUER, jwks_url=JWKS_URL, kid="k1") is first
    await wait_for(lambda: len(issuer.calls) == 2)
    issuer.documents[JWKS_URL] = jwks("k2")
    issuer.gate.set()
    # A kid not held waits for the refresh under way, and finds the new key.
    assert await keys.key(issuer=ISSUER, jwks_url=JWKS_URL, kid="k2") is not None
    assert await keys.key(issuer=ISSUER, jwks_url=JWKS_URL, kid="k1") is None
    await keys.aclose()


async def test_an_issuer_that_is_down_keeps_old_keys_until_their_max_age() -> None:
    clock = FakeClock()
    issuer = Issuer({JWKS_URL: jwks("k1")})
    keys = cache(issuer, clock, ttl_seconds=3600, max_age_seconds=7200, min_refresh_seconds=10)
    assert await keys.key(issuer=ISSUER, jwks_url=JWKS_URL, kid="k1") is not None
    issuer.documents[JWKS_URL] = ConnectionRefusedError("down")
    clock.advance(3700)  # stale: a refresh is tried, fails, and the key still answers
    assert await keys.key(issuer=ISSUER, jwks_url=JWKS_URL, kid="k1") is not None
    await wait_for(lambda: len(issuer.calls) == 2)  # the refresh was tried (and failed)
    clock.advance(5)
    assert await keys.key(issuer=ISSUER, jwks_url=JWKS_URL, kid="k1") is not None
    assert len(issuer.calls) == 2  # the failed refresh is not retried within 10 s
    clock.advance(3600)  # 7300 s after the fetch: past the max age, fail closed
    assert await keys.key(issuer=ISSUER, jwks_url=JWKS_URL, kid="k1") is None
    issuer.documents[JWKS_URL] = jwks("k1")  # back up: the next refresh brings the key back
    clock.advance(10)
    assert await keys.key(issuer=ISSUER, jwks_url=JWKS_URL, kid="k1") is not None


async def test_concurrent_requests_share_one_fetch() -> None:
    issuer = Issuer({JWKS_URL: jwks("k1")})
    issuer.gate = asyncio.Event()
    keys = cache(issuer, FakeClock())
    waiting = [
        asyncio.create_task(keys.key(issuer=ISSUER, jwks_url=JWKS_URL, kid="k1")) for _ in range(20)
    ]
    await asyncio.sleep(0)
    issuer.gate.set()
    found = await asyncio.gather(*waiting)
    assert all(key is not None for key in found)
    assert issuer.calls == [JWKS_URL]


async def test_a_client_that_leaves_does_not_cancel_the_fetch_others_wait_for() -> None:
    issuer = Issuer({JWKS_URL: jwks("k1")})
    issuer.gate = asyncio.Event()
    keys = cache(issuer, FakeClock())
    leaving = asyncio.create_task(keys.key(issuer=ISSUER, jwks_url=JWKS_URL, kid="k1"))
    staying = asyncio.create_task(keys.key(issuer=ISSUER, jwks_url=JWKS_URL, kid="k1"))
    await asyncio.sleep(0)
    leaving.cancel()
    issuer.gate.set()
    assert await staying is not None
    assert issuer.calls == [JWKS_URL]


async def test_a_fetch_that_hangs_is_bounded_by_the_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    issuer = Issuer({JWKS_URL: jwks("k1")})
    issuer.gate = asyncio.Event()  # never set
    keys = cache(issuer, FakeClock(), timeout_seconds=0.05)
    with caplog.at_level(logging.WARNING, logger="kubelambda.gateway.jwks"):
        async with asyncio.timeout(5):
            assert await keys.key(issuer=ISSUER, jwks_url=JWKS_URL, kid="k1") is None
    assert "TimeoutError" in caplog.text


async def test_key_sets_are_bounded_least_recently_used_first() -> None:
    urls = [f"https://keys{n}.example.com/jwks" for n in range(3)]
    issuer = Issuer({url: jwks("k1") for url in urls})
    keys = cache(issuer, FakeClock(), max_sources=2)
    for url in [urls[0], urls[1], urls[0], urls[2]]:  # urls[1] is the least recently used
        assert await keys.key(issuer=ISSUER, jwks_url=url, kid="k1") is not None
    assert issuer.calls == [urls[0], urls[1], urls[2]]
    assert await keys.key(issuer=ISSUER, jwks_url=urls[0], kid="k1") is not None
    assert await keys.key(issuer=ISSUER, jwks_url=urls[1], kid="k1") is not None
    assert issuer.calls == [urls[0], urls[1], urls[2], urls[1]]


def test_only_signing_keys_with_a_kid_are_kept() -> None:
    body = json.dumps(
        {
            "keys": [
                {**RSA_JWK, "kid": "rsa"},
                {**RSA_JWK, "kid": "rsa-384", "alg": "RS384"},
                {**EC_JWK, "kid": "ec"},
                {**RSA_JWK, "kid": "rsa", "alg": "RS512"},  # a kid again: the first wins
                {**RSA_JWK},  # no kid
                {**RSA_JWK, "kid": "enc", "use": "enc"},
                {**RSA_JWK, "kid": "oaep", "alg": "RSA-OAEP"},
                {**P384_JWK, "kid": "p384"},
                {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
                {"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"},
                "not an object",
            ]
        }
    ).encode()
    keys = parse_key_set(body, max_keys=100)
    assert {kid: key.algorithms for kid, key in keys.items()} == {
        "rsa": {"RS256", "RS384", "RS512"},
        "rsa-384": {"RS384"},
        "ec": {"ES256"},
    }


def test_a_key_set_is_bounded() -> None:
    assert list(parse_key_set(jwks(*(f"k{n}" for n in range(5))), max_keys=3)) == [
        "k0",
        "k1",
        "k2",
    ]


@pytest.mark.parametrize("body", [b"<html>", b"[]", b'{"keys": {}}'])
def test_a_body_that_is_not_a_key_set_is_an_error(body: bytes) -> None:
    with pytest.raises(JwksError):
        parse_key_set(body, max_keys=100)


def answer(status: str, body: bytes) -> bytes:
    return (
        f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    ).encode() + body


async def test_url_fetch_gets_a_body_over_loopback_without_blocking_the_loop() -> None:
    async def reply(_: int) -> tuple[bytes, bool]:
        return answer("200 OK", jwks("k1")), False

    async with raw_server(reply) as server:
        fetch = UrlFetch(timeout_seconds=5)
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        ticker = asyncio.create_task(tick())
        body = await fetch(f"http://127.0.0.1:{server.port}/jwks")
        ticker.cancel()
    assert json.loads(body)["keys"][0]["kid"] == "k1"
    assert ticks > 0  # the loop kept running while the thread fetched
    assert b"accept: application/json" in server.requests[0].lower()


@pytest.mark.parametrize(
    ("status", "body", "max_bytes"),
    [("404 Not Found", b"{}", 1024), ("200 OK", b"x" * 2000, 1024)],
    ids=["http-error", "too-big"],
)
async def test_url_fetch_refuses_errors_and_big_bodies(
    status: str, body: bytes, max_bytes: int
) -> None:
    async def reply(_: int) -> tuple[bytes, bool]:
        return answer(status, body), False

    async with raw_server(reply) as server:
        with pytest.raises(Exception, match=r"404|over 1024 bytes"):
            await UrlFetch(max_bytes=max_bytes)(f"http://127.0.0.1:{server.port}/jwks")


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/keys"])
async def test_url_fetch_takes_http_urls_only(url: str) -> None:
    with pytest.raises(JwksError, match="not an http"):
        await UrlFetch()(url)


@pytest.mark.parametrize(
    ("url", "warned"),
    [
        ("http://keys.example.com/jwks", True),
        ("http://10.0.0.7/jwks", True),
        ("http://127.0.0.1:8080/jwks", False),
        ("http://localhost/jwks", False),
        ("http://[::1]/jwks", False),
        ("https://keys.example.com/jwks", False),
    ],
)
async def test_keys_over_plain_http_beyond_loopback_are_warned_about_once(
    url: str, warned: bool, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    keys = cache(Issuer({url: jwks("k1")}), clock)
    with caplog.at_level(logging.WARNING, logger="kubelambda.gateway.jwks"):
        assert await keys.key(issuer=ISSUER, jwks_url=url, kid="k1") is not None
        clock.advance(20)
        assert await keys.key(issuer=ISSUER, jwks_url=url, kid="other") is None  # refreshed
    assert caplog.text.count("plain http") == (1 if warned else 0)
