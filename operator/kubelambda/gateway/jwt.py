"""JWT authorizers of HTTP Trigger routes, checking tokens as API Gateway HTTP APIs do.

`TriggerHandler` calls `JwtAuthorizer.authorize` for a route with a JWT authorizer: it
returns the event's `requestContext.authorizer` or raises JwtUnauthorized (401) or
JwtForbidden (403). PyJWT checks the signature with the issuer's key (jwks.py); the claims
are checked here, against the gateway's clock.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

import jwt

from kubelambda.clock import Clock
from kubelambda.gateway.exceptions import JwtForbidden, JwtUnauthorized
from kubelambda.gateway.http import Request
from kubelambda.gateway.jwks import ALGORITHMS, JwksCache
from kubelambda.gateway.routing import JwtAuthorizerConfig

__all__ = ["JwtAuthorizer", "render_claims", "token_scopes"]

log = logging.getLogger(__name__)

# PyJWT checks the signature only; the time claims are checked against the injected clock.
_SIGNATURE_ONLY: Any = {
    "verify_signature": True,
    "verify_exp": False,
    "verify_nbf": False,
    "verify_iat": False,
    "verify_aud": False,
    "verify_iss": False,
    "verify_sub": False,
    "verify_jti": False,
}
_HEADER = "$request.header."
_QUERY = "$request.querystring."


def _token(request: Request, source: str) -> str | None:
    """The token where `source` says, without a leading "Bearer " (the scheme in any case)."""
    value: str | None = None
    if source.startswith(_HEADER):
        value = request.header(source[len(_HEADER) :].lower().encode("latin-1"))
    elif source.startswith(_QUERY) and request.query:
        name = source[len(_QUERY) :]
        pairs = parse_qsl(request.query.decode("latin-1"), keep_blank_values=True)
        value = next((v for k, v in pairs if k == name), None)
    if value is None:
        return None
    scheme, space, rest = value.strip().partition(" ")
    token = rest.strip() if space and scheme.lower() == "bearer" else value.strip()
    return token or None


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _strings(value: object) -> list[str]:
    """A claim that is a space-separated string or a list of strings, as a list."""
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list):
        return [item for item in value if isinstance(item, str)]
    return []


def token_scopes(claims: Mapping[str, Any]) -> list[str]:
    """The token's scopes: its `scope` claim (space-separated, as OAuth 2.0 writes it) and its
    `scp` claim (a list, or space-separated), in that order, each once."""
    return list(dict.fromkeys([*_strings(claims.get("scope")), *_strings(claims.get("scp"))]))


def _render(value: object) -> str:
    if isinstance(value, str):
        return value
    # Numbers and booleans as JSON writes them; an object as compact JSON text.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def render_claims(claims: Mapping[str, Any]) -> dict[str, str]:
    """The claims as payload 2.0 hands them to a function: every value a string. Strings as
    they are, numbers and booleans as text ("1700000000", "true"), lists in brackets with
    their items separated by spaces ("[admin editor]"), objects as JSON text; null claims
    are left out."""
    rendered: dict[str, str] = {}
    for name, value in claims.items():
        if value is None:
            continue
        if isinstance(value, list):
            rendered[name] = "[" + " ".join(_render(item) for item in value) + "]"
        else:
            rendered[name] = _render(value)
    return rendered


def _challenge(config: JwtAuthorizerConfig, error: str | None, description: str = "") -> str:
    """The www-authenticate value, in API Gateway's form (RFC 6750): `scope` names the scopes
    the route wants; no error for a request without a token."""
    scope = " ".join(sorted(config.scopes))
    if error is None:
        return f'Bearer scope="{scope}"'
    return f'Bearer scope="{scope}" error="{error}" error_description="{description}"'


class JwtAuthorizer:
    """Checks a route's token: signature (RS256, RS384, RS512 or ES256, with the issuer's key
    named by the token's `kid`), `iss`, `aud` (or `client_id` when there is no `aud`), `exp`
    (required), `nbf` and `iat`, each time within `leeway_seconds` of the clock's wall time;
    then the route's scopes."""

    def __init__(self, *, keys: JwksCache, clock: Clock, leeway_seconds: float = 30.0) -> None:
        self._keys = keys
        self._clock = clock
        self._leeway = leeway_seconds

    async def authorize(self, request: Request, config: JwtAuthorizerConfig) -> dict[str, Any]:
        """The event's `requestContext.authorizer`: `{"jwt": {"claims", "scopes"}}`, where
        `scopes` is the token's scopes on a route that wants some, else None."""
        token = _token(request, config.identity_source)
        if token is None:
            raise JwtUnauthorized(
                f"no token in {config.identity_source}", challenge=_challenge(config, None)
            )
        claims = await self._verified(token, config)
        self._check(claims, config)
        scopes = token_scopes(claims)
        if config.scopes and config.scopes.isdisjoint(scopes):
            raise JwtForbidden(
                "the token has none of the route's scopes",
                challenge=_challenge(
                    config,
                    "insufficient_scope",
                    "the token does not have the scopes this route requires",
                ),
            )
        return {
            "jwt": {"claims": render_claims(claims), "scopes": scopes if config.scopes else None}
        }

    def _refuse(self, config: JwtAuthorizerConfig, description: str) -> JwtUnauthorized:
        log.debug("JWT refused (issuer %s): %s", config.issuer, description)
        return JwtUnauthorized(
            description, challenge=_challenge(config, "invalid_token", description)
        )

    async def _verified(self, token: str, config: JwtAuthorizerConfig) -> dict[str, Any]:
        """The token's claims once its signature is checked with the issuer's key."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise self._refuse(config, "the token is malformed") from None
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in ALGORITHMS:
            raise self._refuse(config, "the token's signing algorithm is not supported")
        if not isinstance(kid, str) or not kid:
            raise self._refuse(config, "the token names no signing key (kid)")
        key = await self._keys.key(issuer=config.issuer, jwks_url=config.jwks_url, kid=kid)
        if key is None:
            raise self._refuse(config, "the token's signing key is not one of the issuer's")
        if alg not in key.algorithms:
            raise self._refuse(config, "the token's signing algorithm does not fit its key")
        try:
            claims: dict[str, Any] = jwt.decode(
                token, key.key, algorithms=[alg], options=_SIGNATURE_ONLY
            )
        except jwt.InvalidSignatureError:
            raise self._refuse(config, "the token's signature is invalid") from None
        except jwt.PyJWTError:
            raise self._refuse(config, "the token is malformed") from None
        return claims

    def _check(self, claims: Mapping[str, Any], config: JwtAuthorizerConfig) -> None:
        if claims.get("iss") != config.issuer:
            raise self._refuse(config, "the token does not have a valid issuer")
        # As API Gateway: client_id counts only when the token has no aud.
        if "aud" in claims:
            aud = claims["aud"]
            audiences = [aud] if isinstance(aud, str) else _strings(aud)
        else:
            client_id = claims.get("client_id")
            audiences = [client_id] if isinstance(client_id, str) else []
        if config.audience.isdisjoint(audiences):
            raise self._refuse(config, "the token does not have a valid audience")
        now = self._clock.wall()
        expires = _number(claims.get("exp"))
        if expires is None:
            raise self._refuse(config, "the token has no expiry time (exp)")
        if now >= expires + self._leeway:
            raise self._refuse(config, "the token has expired")
        for name, what in (("nbf", "is not valid yet"), ("iat", "was issued in the future")):
            if name not in claims:
                continue
            moment = _number(claims[name])
            if moment is None:
                raise self._refuse(config, f"the token's {name} is not a number")
            if moment > now + self._leeway:
                raise self._refuse(config, f"the token {what}")
