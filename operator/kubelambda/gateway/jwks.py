"""The signing keys of the issuers that HTTP Trigger routes trust: JSON Web Key Sets fetched by
the gateway and cached per URL. `JwksCache.key` is what the JWT authorizer (jwt.py) asks.

A key set is fetched on first use, refreshed after `ttl_seconds` (keys keep working while the
refresh runs, and while the issuer is down, up to `max_age_seconds` after they were fetched),
and refreshed when a token names a key it does not hold, at most once per
`min_refresh_seconds` per URL: a flood of made-up key ids cannot hammer the issuer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.request
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from ipaddress import ip_address
from typing import Any
from urllib.parse import urlsplit

import jwt

from kubelambda.clock import Clock

__all__ = [
    "ALGORITHMS",
    "DISCOVERY_PATH",
    "Fetch",
    "JwksCache",
    "JwksError",
    "SigningKey",
    "UrlFetch",
    "discovery_url",
    "parse_key_set",
]

log = logging.getLogger(__name__)

# API Gateway verifies RSA signatures only; ES256 (P-256) costs nothing more to take.
RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512"})
ALGORITHMS = RSA_ALGORITHMS | {"ES256"}
DISCOVERY_PATH = "/.well-known/openid-configuration"

Fetch = Callable[[str], Awaitable[bytes]]
"""GET an http(s) URL and return the body of its 200 answer; raise anything when that fails."""


class JwksError(Exception):
    """An OpenID configuration or a key set the gateway cannot use."""


def discovery_url(issuer: str) -> str:
    """Where an issuer's OpenID configuration is, as API Gateway looks for it."""
    return issuer.rstrip("/") + DISCOVERY_PATH


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One usable key of a key set: its `kid`, the algorithms it may verify (its kind's, or
    the one its JWK names) and the public key itself, ready for PyJWT."""

    kid: str
    algorithms: frozenset[str]
    key: Any


def _algorithms(jwk: Mapping[str, Any]) -> frozenset[str]:
    kty, alg = jwk.get("kty"), jwk.get("alg")
    if kty == "RSA":
        possible = RSA_ALGORITHMS
    elif kty == "EC" and jwk.get("crv") == "P-256":
        possible = frozenset({"ES256"})
    else:  # symmetric (oct) keys, other curves: never a signing key here
        return frozenset()
    if alg is None:
        return possible
    return possible & {alg} if isinstance(alg, str) else frozenset()


def parse_key_set(body: bytes, *, max_keys: int) -> dict[str, SigningKey]:
    """The usable signing keys of a JWKS document, by kid (the first of a kid wins); keys
    without a kid, for encryption, of another kind or unreadable are left out, and so is
    everything past `max_keys`. JwksError when the document is not a key set."""
    try:
        document = json.loads(body)
    except ValueError as exc:
        raise JwksError(f"the key set is not JSON ({exc})") from None
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise JwksError("not a JSON Web Key Set: no 'keys' list")
    keys: dict[str, SigningKey] = {}
    for jwk in document["keys"]:
        if len(keys) >= max_keys:
            log.warning("a key set holds over %d keys; the rest are not used", max_keys)
            break
        if not isinstance(jwk, dict) or jwk.get("use", "sig") != "sig":
            continue
        kid = jwk.get("kid")
        algorithms = _algorithms(jwk)
        if not isinstance(kid, str) or not kid or not algorithms or kid in keys:
            continue
        try:
            public = jwt.PyJWK(jwk).key
        except Exception:  # a key PyJWT cannot read is one no token can be checked with
            continue
        keys[kid] = SigningKey(kid=kid, algorithms=algorithms, key=public)
    return keys


def _opener() -> urllib.request.OpenerDirector:
    # http(s) only, redirects included: no file:, ftp: or data: URL can be reached this way.
    opener = urllib.request.OpenerDirector()
    for handler in (
        urllib.request.ProxyHandler(),
        urllib.request.HTTPHandler(),
        urllib.request.HTTPSHandler(),
        urllib.request.HTTPRedirectHandler(),
        urllib.request.HTTPDefaultErrorHandler(),
        urllib.request.HTTPErrorProcessor(),
    ):
        opener.add_handler(handler)
    return opener


class UrlFetch:
    """The real `Fetch`: urllib in a worker thread, so the event loop never waits on a socket;
    each socket operation bounded by `timeout_seconds`, the body by `max_bytes`."""

    def __init__(self, *, timeout_seconds: float = 5.0, max_bytes: int = 1024 * 1024) -> None:
        self._timeout = timeout_seconds
        self._max_bytes = max_bytes
        self._opener = _opener()

    async def __call__(self, url: str) -> bytes:
        return await asyncio.to_thread(self._get, url)

    def _get(self, url: str) -> bytes:
        if not url.startswith(("https://", "http://")):
            raise JwksError(f"{url!r} is not an http(s) URL")
        request = urllib.request.Request(
            url, headers={"accept": "application/json", "user-agent": "kubelambda-gateway"}
        )
        with self._opener.open(request, timeout=self._timeout) as answer:
            body: bytes = answer.read(self._max_bytes + 1)
        if len(body) > self._max_bytes:
            raise JwksError(f"{url} answered over {self._max_bytes} bytes")
        return body


def _in_the_clear(url: str) -> bool:
    """Whether keys from `url` travel unencrypted beyond this machine (anyone on the way
    could swap them for their own, and sign tokens the gateway takes)."""
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname == "localhost":
        return False
    try:
        return not ip_address(parts.hostname or "").is_loopback
    except ValueError:
        return True


class _KeySet:
    """What is known of one URL: its keys, when they were fetched and last asked for (both
    monotonic), and the refresh under way, which every request waiting for it shares."""

    __slots__ = ("asked", "fetched", "keys", "refresh", "warned")

    def __init__(self) -> None:
        self.keys: dict[str, SigningKey] = {}
        self.fetched: float | None = None
        self.asked: float | None = None
        self.refresh: asyncio.Task[None] | None = None
        self.warned = False


class JwksCache:
    """Key sets by URL: the route's jwksUrl, or its issuer's OpenID configuration (whose
    `jwks_uri` names the key set). At most `max_sources` of them (the least recently used
    goes first) and `max_keys` keys each. A fetch that fails is logged and changes nothing:
    keys fetched before keep working (up to `max_age_seconds`); tokens signed with any other
    key are refused (fail closed)."""

    def __init__(
        self,
        *,
        clock: Clock,
        fetch: Fetch | None = None,
        ttl_seconds: float = 3600.0,
        max_age_seconds: float = 7200.0,
        min_refresh_seconds: float = 10.0,
        timeout_seconds: float = 5.0,
        max_sources: int = 1024,
        max_keys: int = 100,
    ) -> None:
        self._clock = clock
        self._fetch = fetch or UrlFetch(timeout_seconds=timeout_seconds)
        self._ttl = ttl_seconds
        self._max_age = max_age_seconds
        self._min_refresh = min_refresh_seconds
        self._timeout = timeout_seconds
        self._max_sources = max_sources
        self._max_keys = max_keys
        self._sets: OrderedDict[str, _KeySet] = OrderedDict()
        self._refreshing: set[asyncio.Task[None]] = set()

    async def key(self, *, issuer: str, jwks_url: str | None, kid: str) -> SigningKey | None:
        """The key `kid` of `issuer` (whose keys are at `jwks_url`, or found by discovery),
        or None when the issuer has no such key or its keys cannot be had."""
        source = jwks_url or discovery_url(issuer)
        keys = self._set(source)
        now = self._clock.monotonic()
        key = self._usable(keys, kid, now)
        if key is not None and keys.fetched is not None and now - keys.fetched < self._ttl:
            return key
        if keys.refresh is None and (keys.asked is None or now - keys.asked >= self._min_refresh):
            keys.asked = now
            task = asyncio.create_task(self._refresh(keys, source=source, jwks_url=jwks_url))
            keys.refresh = task
            self._refreshing.add(task)
            task.add_done_callback(self._refreshing.discard)
        if key is not None:  # old but still good: answer now, the refresh runs on
            return key
        if keys.refresh is not None:
            # Shielded: a client that leaves does not cancel the fetch others wait for.
            await asyncio.shield(keys.refresh)
            return self._usable(keys, kid, self._clock.monotonic())
        return None

    async def aclose(self) -> None:
        """Stop the refreshes under way (a fetch already in its thread ends by its timeout)."""
        for task in list(self._refreshing):
            task.cancel()
        await asyncio.gather(*self._refreshing, return_exceptions=True)

    def _set(self, source: str) -> _KeySet:
        keys = self._sets.get(source)
        if keys is None:
            keys = self._sets[source] = _KeySet()
            while len(self._sets) > self._max_sources:
                self._sets.popitem(last=False)
        else:
            self._sets.move_to_end(source)
        return keys

    def _usable(self, keys: _KeySet, kid: str, now: float) -> SigningKey | None:
        if keys.fetched is None or now - keys.fetched >= self._max_age:
            return None
        return keys.keys.get(kid)

    async def _get(self, url: str) -> bytes:
        async with asyncio.timeout(self._timeout):
            return await self._fetch(url)

    async def _refresh(self, keys: _KeySet, *, source: str, jwks_url: str | None) -> None:
        try:
            url = jwks_url
            if url is None:
                url = _jwks_uri(await self._get(source), source)
            fetched = parse_key_set(await self._get(url), max_keys=self._max_keys)
        except Exception as exc:  # whatever failed: logged, and the keys held stay
            log.warning(
                "JWT keys from %s could not be fetched (%s: %s); tokens signed with keys not"
                " held already are refused until it answers",
                source,
                type(exc).__name__,
                exc if str(exc) else f"no answer within {self._timeout:g} s",
            )
            return
        finally:
            keys.refresh = None
        if not fetched:
            log.warning("the key set at %s holds no usable signing key", url)
        if not keys.warned and (_in_the_clear(url) or _in_the_clear(source)):
            keys.warned = True
            log.warning("JWT keys from %s come over plain http: use https outside tests", url)
        keys.keys = fetched
        keys.fetched = self._clock.monotonic()


def _jwks_uri(body: bytes, source: str) -> str:
    try:
        configuration = json.loads(body)
    except ValueError as exc:
        raise JwksError(f"the OpenID configuration is not JSON ({exc})") from None
    uri = configuration.get("jwks_uri") if isinstance(configuration, dict) else None
    if not isinstance(uri, str) or not uri.startswith(("https://", "http://")):
        raise JwksError(f"the OpenID configuration at {source} names no http(s) jwks_uri")
    return uri
