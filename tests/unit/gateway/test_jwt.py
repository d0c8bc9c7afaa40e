"""The JWT authorizer of HTTP Trigger routes (gateway/jwt.py), checked as API Gateway checks
tokens: a table of tokens and what each gets, then key rotation, the refresh's rate limit and
an issuer that is down. Keys are made here; the issuer is a fake fetcher, time a FakeClock."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from kubelambda.clock import FakeClock
from kubelambda.gateway.exceptions import JwtForbidden, JwtRefused, JwtUnauthorized
from kubelambda.gateway.http import Request
from kubelambda.gateway.jwks import JwksCache
from kubelambda.gateway.jwt import JwtAuthorizer, render_claims, token_scopes
from kubelambda.gateway.routing import JwtAuthorizerConfig

pytestmark = pytest.mark.anyio

ISSUER = "https://issuer.example.com"
JWKS_URL = "https://issuer.example.com/keys"
NOW = 1_700_000_000.0

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ROTATED_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())


def public_jwk(private: Any, kid: str) -> dict[str, Any]:
    algorithm = (
        pyjwt.algorithms.ECAlgorithm if kid.startswith("ec") else pyjwt.algorithms.RSAAlgorithm
    )
    jwk: dict[str, Any] = algorithm.to_jwk(private.public_key(), as_dict=True)
    return {**jwk, "kid": kid, "use": "sig"}


def key_set(*jwks: dict[str, Any]) -> bytes:
    return json.dumps({"keys": list(jwks)}).encode()


@dataclass
class FakeIssuer:
    """The issuer's endpoints: URL -> body, or an exception to raise; every call recorded."""

    documents: dict[str, bytes | Exception] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)

    async def __call__(self, url: str) -> bytes:
        self.calls.append(url)
        answer = self.documents.get(url, ConnectionRefusedError(f"nothing at {url}"))
        if isinstance(answer, Exception):
            raise answer
        return answer


DROP = object()  # a claim value meaning: leave the claim out


def claims(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "iss": ISSUER,
        "aud": "orders-api",
        "sub": "user-1",
        "exp": int(NOW) + 300,
        "iat": int(NOW) - 10,
    }
    base.update(overrides)
    return {name: value for name, value in base.items() if value is not DROP}


def sign(
    payload: dict[str, Any], *, key: Any = RSA_KEY, kid: str = "k1", alg: str = "RS256"
) -> str:
    return pyjwt.encode(payload, key, algorithm=alg, headers={"kid": kid})


def unsigned(payload: dict[str, Any]) -> str:
    return pyjwt.encode(payload, None, algorithm="none", headers={"kid": "k1"})


def hs256_with_public_key(payload: dict[str, Any]) -> str:
    """The algorithm-confusion attack: HMAC keyed with the issuer's public key (PEM)."""
    secret = RSA_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )

    def part(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    head = part(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "k1"}).encode())
    body = part(json.dumps(payload).encode())
    mac = hmac.new(secret, head + b"." + body, hashlib.sha256).digest()
    return (head + b"." + body + b"." + part(mac)).decode()


def request(*, headers: dict[str, str] | None = None, query: str = "") -> Request:
    scope = {
        "method": "GET",
        "path": "/orders",
        "query_string": query.encode(),
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    return Request.from_scope(scope, receive, received=0.0)


def bearer(token: str) -> Request:
    return request(headers={"Authorization": f"Bearer {token}"})


def config(**overrides: Any) -> JwtAuthorizerConfig:
    options: dict[str, Any] = {
        "issuer": ISSUER,
        "audience": frozenset({"orders-api", "admin-api"}),
        "jwks_url": JWKS_URL,
    }
    options.update(overrides)
    return JwtAuthorizerConfig(**options)


@dataclass
class Setup:
    issuer: FakeIssuer
    clock: FakeClock
    keys: JwksCache
    authorizer: JwtAuthorizer


@pytest.fixture
def setup() -> Setup:
    issuer = FakeIssuer({JWKS_URL: key_set(public_jwk(RSA_KEY, "k1"), public_jwk(EC_KEY, "ec1"))})
    clock = FakeClock(wall=NOW)
    keys = JwksCache(clock=clock, fetch=issuer)
    return Setup(issuer, clock, keys, JwtAuthorizer(keys=keys, clock=clock, leeway_seconds=30))


@dataclass(frozen=True)
class Case:
    name: str
    request: Callable[[], Request]
    config: JwtAuthorizerConfig = field(default_factory=config)
    # None: authorised; else the refusal and a phrase of its www-authenticate challenge.
    refused: type[JwtRefused] | None = None
    challenge: str = ""


CASES = [
    Case("good token", lambda: bearer(sign(claims()))),
    Case(
        "token without the Bearer prefix",
        lambda: request(headers={"Authorization": sign(claims())}),
    ),
    Case(
        "bearer in lower case",
        lambda: request(headers={"Authorization": "bearer " + sign(claims())}),
    ),
    Case(
        "aud is a list holding one audience", lambda: bearer(sign(claims(aud=["x", "admin-api"])))
    ),
    Case(
        "client_id instead of aud", lambda: bearer(sign(claims(aud=DROP, client_id="orders-api")))
    ),
    Case("ES256 token", lambda: bearer(sign(claims(), key=EC_KEY, kid="ec1", alg="ES256"))),
    Case("RS512 token", lambda: bearer(sign(claims(), alg="RS512"))),
    Case("expired, but within the leeway", lambda: bearer(sign(claims(exp=int(NOW) - 20)))),
    Case(
        "token in another header",
        lambda: request(headers={"X-Token": sign(claims())}),
        config(identity_source="$request.header.X-Token"),
    ),
    Case(
        "token in the query string",
        lambda: request(query="a=1&access_token=" + sign(claims())),
        config(identity_source="$request.querystring.access_token"),
    ),
    Case(
        "scope claim holds a route scope",
        lambda: bearer(sign(claims(scope="profile orders:read"))),
        config(scopes=frozenset({"orders:read", "orders:write"})),
    ),
    Case(
        "scp list holds a route scope",
        lambda: bearer(sign(claims(scp=["orders:write"]))),
        config(scopes=frozenset({"orders:read", "orders:write"})),
    ),
    # refused: 401
    Case(
        "no Authorization header",
        lambda: request(),
        refused=JwtUnauthorized,
        challenge='Bearer scope=""',
    ),
    Case(
        "empty Bearer",
        lambda: request(headers={"Authorization": "Bearer "}),
        refused=JwtUnauthorized,
        challenge='Bearer scope=""',
    ),
    Case(
        "token in the header, route reads the query string",
        lambda: bearer(sign(claims())),
        config(identity_source="$request.querystring.access_token"),
        refused=JwtUnauthorized,
    ),
    Case(
        "not a JWT", lambda: bearer("not-a-token"), refused=JwtUnauthorized, challenge="malformed"
    ),
    Case(
        "expired",
        lambda: bearer(sign(claims(exp=int(NOW) - 31))),
        refused=JwtUnauthorized,
        challenge='error="invalid_token" error_description="the token has expired"',
    ),
    Case(
        "no exp", lambda: bearer(sign(claims(exp=DROP))), refused=JwtUnauthorized, challenge="exp"
    ),
    Case("exp not a number", lambda: bearer(sign(claims(exp="soon"))), refused=JwtUnauthorized),
    Case(
        "nbf in the future",
        lambda: bearer(sign(claims(nbf=int(NOW) + 120))),
        refused=JwtUnauthorized,
        challenge="not valid yet",
    ),
    Case(
        "iat in the future",
        lambda: bearer(sign(claims(iat=int(NOW) + 120))),
        refused=JwtUnauthorized,
        challenge="issued in the future",
    ),
    Case(
        "wrong iss",
        lambda: bearer(sign(claims(iss="https://evil.example.com"))),
        refused=JwtUnauthorized,
        challenge="valid issuer",
    ),
    Case(
        "wrong aud",
        lambda: bearer(sign(claims(aud="billing-api"))),
        refused=JwtUnauthorized,
        # AWS's own words (its troubleshooting page for HTTP API JWT authorizers).
        challenge='Bearer scope="" error="invalid_token" '
        'error_description="the token does not have a valid audience"',
    ),
    Case(
        "aud wrong, client_id right: aud decides",
        lambda: bearer(sign(claims(aud="billing-api", client_id="orders-api"))),
        refused=JwtUnauthorized,
        challenge="valid audience",
    ),
    Case("no aud, no client_id", lambda: bearer(sign(claims(aud=DROP))), refused=JwtUnauthorized),
    Case(
        "alg none",
        lambda: bearer(unsigned(claims())),
        refused=JwtUnauthorized,
        challenge="algorithm is not supported",
    ),
    Case(
        "HS256 keyed with the public key",
        lambda: bearer(hs256_with_public_key(claims())),
        refused=JwtUnauthorized,
        challenge="algorithm is not supported",
    ),
    Case(
        "RSA key used for an ES256 header",
        lambda: bearer(sign(claims(), key=EC_KEY, kid="k1", alg="ES256")),
        refused=JwtUnauthorized,
        challenge="does not fit its key",
    ),
    Case(
        "signed by another key under a known kid",
        lambda: bearer(sign(claims(), key=ROTATED_KEY, kid="k1")),
        refused=JwtUnauthorized,
        challenge="signature is invalid",
    ),
    Case(
        "unknown kid",
        lambda: bearer(sign(claims(), kid="nope")),
        refused=JwtUnauthorized,
        challenge="not one of the issuer's",
    ),
    Case(
        "no kid",
        lambda: bearer(pyjwt.encode(claims(), RSA_KEY, algorithm="RS256")),
        refused=JwtUnauthorized,
        challenge="no signing key",
    ),
    # refused: 403
    Case(
        "scopes missing",
        lambda: bearer(sign(claims(scope="profile"))),
        config(scopes=frozenset({"orders:read"})),
        refused=JwtForbidden,
        challenge='Bearer scope="orders:read" error="insufficient_scope"',
    ),
    Case(
        "no scope claim at all",
        lambda: bearer(sign(claims())),
        config(scopes=frozenset({"orders:read"})),
        refused=JwtForbidden,
    ),
    Case(
        "scopes wanted but the token is bad: 401 first",
        lambda: bearer(sign(claims(aud="billing-api", scope="orders:read"))),
        config(scopes=frozenset({"orders:read"})),
        refused=JwtUnauthorized,
        challenge='Bearer scope="orders:read" error="invalid_token"',
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
async def test_token_table(setup: Setup, case: Case) -> None:
    if case.refused is None:
        got = await setup.authorizer.authorize(case.request(), case.config)
        assert got["jwt"]["claims"]["sub"] == "user-1"
        return
    with pytest.raises(JwtRefused) as caught:
        await setup.authorizer.authorize(case.request(), case.config)
    refusal = caught.value
    assert type(refusal) is case.refused
    assert (refusal.status, refusal.message) == (
        (401, "Unauthorized") if case.refused is JwtUnauthorized else (403, "Forbidden")
    )
    assert case.challenge in refusal.challenge


async def test_authorised_request_gets_the_payload_2_shape(setup: Setup) -> None:
    token = sign(claims(scope="orders:read profile", groups=["admin", "editor"], admin=True))
    plain = await setup.authorizer.authorize(bearer(token), config())
    assert plain == {
        "jwt": {
            "claims": {
                "iss": ISSUER,
                "aud": "orders-api",
                "sub": "user-1",
                "exp": str(int(NOW) + 300),
                "iat": str(int(NOW) - 10),
                "scope": "orders:read profile",
                "groups": "[admin editor]",
                "admin": "true",
            },
            # a route without scopes: null, even when the token has some
            "scopes": None,
        }
    }
    scoped = await setup.authorizer.authorize(
        bearer(token), config(scopes=frozenset({"orders:read"}))
    )
    # a route with scopes: every scope of the token
    assert scoped["jwt"]["scopes"] == ["orders:read", "profile"]


def test_claims_render_as_strings_as_api_gateway_sends_them() -> None:
    assert render_claims(
        {
            "s": "text",
            "n": 42,
            "f": 1.5,
            "t": True,
            "list": ["a", 1, None],
            "empty": [],
            "obj": {"city": "Seattle", "zip": 98101},
            "gone": None,
            "é": "ünïcode",
        }
    ) == {
        "s": "text",
        "n": "42",
        "f": "1.5",
        "t": "true",
        "list": "[a 1 null]",
        "empty": "[]",
        "obj": '{"city":"Seattle","zip":98101}',
        "é": "ünïcode",
    }


@pytest.mark.parametrize(
    ("token", "scopes"),
    [
        ({"scope": "a b  c"}, ["a", "b", "c"]),
        ({"scp": ["a", "b"]}, ["a", "b"]),
        ({"scp": "a b"}, ["a", "b"]),
        ({"scope": "a b", "scp": ["b", "c"]}, ["a", "b", "c"]),
        ({"scope": 7}, []),
        ({}, []),
    ],
)
def test_token_scopes_come_from_scope_and_scp(token: dict[str, Any], scopes: list[str]) -> None:
    assert token_scopes(token) == scopes


async def test_rotated_keys_are_fetched_for_a_new_kid(setup: Setup) -> None:
    assert await setup.authorizer.authorize(bearer(sign(claims())), config())
    assert setup.issuer.calls == [JWKS_URL]
    # The issuer rotates to a new key (and drops the old one).
    setup.issuer.documents[JWKS_URL] = key_set(public_jwk(ROTATED_KEY, "k2"))
    setup.clock.advance(11)
    rotated = sign(claims(exp=int(NOW) + 600), key=ROTATED_KEY, kid="k2")
    assert await setup.authorizer.authorize(bearer(rotated), config())
    assert setup.issuer.calls == [JWKS_URL, JWKS_URL]
    # The old key went with the key set that no longer holds it.
    with pytest.raises(JwtUnauthorized):
        await setup.authorizer.authorize(bearer(sign(claims(exp=int(NOW) + 600))), config())


async def test_unknown_kids_within_the_rate_limit_cost_one_fetch(setup: Setup) -> None:
    assert await setup.authorizer.authorize(bearer(sign(claims())), config())
    setup.clock.advance(20)  # past the 10 s limit: the next unknown kid may ask again
    for _ in range(2):
        with pytest.raises(JwtUnauthorized):
            await setup.authorizer.authorize(bearer(sign(claims(), kid="bogus")), config())
        setup.clock.advance(1)
    assert setup.issuer.calls == [JWKS_URL, JWKS_URL]  # the first fetch, then one refresh


async def test_issuer_down_refuses_tokens_and_says_so(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    setup.issuer.documents[JWKS_URL] = ConnectionRefusedError("connection refused")
    with (
        caplog.at_level(logging.WARNING, logger="kubelambda.gateway.jwks"),
        pytest.raises(JwtUnauthorized) as caught,
    ):
        await setup.authorizer.authorize(bearer(sign(claims())), config())
    assert "not one of the issuer's" in caught.value.challenge
    assert any(
        JWKS_URL in record.getMessage() and "connection refused" in record.getMessage()
        for record in caplog.records
    )
