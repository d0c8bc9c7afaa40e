"""HTTP Trigger routes: a request becomes an API Gateway payload 2.0 event, the function's
return value becomes the response.

The public app hands every request outside the reserved paths to `TriggerHandler`; this
is the gateway's hottest path, so it does its work inline and allocates little.
"""

from __future__ import annotations

import hmac
import json
from typing import Any, Final

import orjson

from kubelambda.api.identity import FunctionKey, function_arn
from kubelambda.clock import Clock
from kubelambda.gateway.current import Current
from kubelambda.gateway.exceptions import Forbidden, PayloadTooLarge, UpstreamFailed
from kubelambda.gateway.http import Request, Response
from kubelambda.gateway.ids import new_request_id
from kubelambda.gateway.invocation import Call, Invocation, Invoker
from kubelambda.gateway.jwt import JwtAuthorizer
from kubelambda.gateway.routing import RouteMatch
from kubelambda.gateway.settings import GatewaySettings
from kubelambda.gateway.sources.http_event import build_event
from kubelambda.gateway.sources.http_payload import function_error_response, map_response
from kubelambda.gateway.tracing import TRACEPARENT_HEADER, XRAY_HEADER, incoming

__all__ = ["TriggerHandler"]

_FRAMING: Final = frozenset({b"content-length", b"transfer-encoding", b"connection", b"keep-alive"})
_dumps: Final = json.JSONEncoder(separators=(",", ":")).encode
_orjson_dumps: Final = orjson.dumps  # bound once: a module attribute is a lookup per call
# The trace headers, as the event's `headers` names them.
_XRAY_NAME: Final = XRAY_HEADER.decode("ascii")
_TRACEPARENT_NAME: Final = TRACEPARENT_HEADER.decode("ascii")
# Makes a NamedTuple without its own __new__, a Python function: half the cost per record.
_make: Final = tuple.__new__


def _event_json(event: dict[str, Any]) -> bytes:
    """The event as JSON: by orjson, several times faster than the json module, with the same
    value (non-ASCII as UTF-8 rather than escaped); a string orjson refuses (a lone surrogate,
    which a JWT claim may hold) goes through the json module instead."""
    try:
        return _orjson_dumps(event)
    except TypeError:
        return _dumps(event).encode("utf-8")


def _authenticate(request: Request, keys: frozenset[str]) -> None:
    presented = request.header(b"x-api-key")
    if presented is None:
        raise Forbidden("this route requires an API key in the x-api-key header")
    # Compare with every key, in constant time, so timing tells nothing about them.
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(presented.encode("latin-1"), key.encode("utf-8"))
    if not matched:
        raise Forbidden("the x-api-key header does not hold a valid key for this route")


class TriggerHandler:
    """Serves requests on HTTP Trigger routes."""

    def __init__(
        self,
        *,
        routes: Current,
        invoker: Invoker,
        clock: Clock,
        settings: GatewaySettings,
        jwt: JwtAuthorizer,
    ) -> None:
        self._routes = routes
        self._jwt = jwt
        self._invoker = invoker
        self._clock = clock
        self._settings = settings
        # Read per request, so kept here: a setting is an attribute lookup on a Python object.
        self._hold_seconds = settings.hold_timeout_seconds
        self._account_id = settings.account_id
        self._arns: dict[FunctionKey, bytes] = {}
        # One-entry memo of the Host header's domain (port dropped): nearly every request
        # names the same host, and a compare costs a fraction of the split.
        self._domain: tuple[str | None, str] = (None, settings.domain_name)

    def _arn(self, key: FunctionKey) -> bytes:
        arn = self._arns.get(key)
        if arn is None:
            settings = self._settings
            arn = self._arns[key] = function_arn(
                key,
                region=settings.region,
                account_id=settings.account_id,
                default_namespace=settings.default_namespace,
            ).encode("ascii")
        return arn

    async def __call__(self, request: Request) -> Response:
        match = self._match(request)
        route = match.route
        authorizer = None
        if route.jwt is not None:
            authorizer = await self._jwt.authorize(request, route.jwt)
        call = self._call(request, match, authorizer)
        return self.answer(call, await self._invoker.run(call))

    def prepare(self, request: Request) -> Call | None:
        """The invocation `request` asks for, when it needs no wait before it: None for a route
        whose JWT must be checked (its issuer's keys may have to be fetched)."""
        match = self._match(request)
        if match.route.jwt is not None:
            return None
        return self._call(request, match, None)

    def _match(self, request: Request) -> RouteMatch:
        """The route and function of `request`, its API key checked."""
        match = self._routes.match(request.method, request.path, request.host)
        request.function = match.function.key
        route = match.route
        if route.api_keys is not None:
            _authenticate(request, route.api_keys)
        return match

    def _call(self, request: Request, match: RouteMatch, authorizer: dict[str, Any] | None) -> Call:
        """The invocation: the request as an API Gateway payload 2.0 event."""
        function = match.function
        key = function.key
        request_id = request.request_id = new_request_id()
        host = request.host
        cached_host, domain = self._domain
        if host != cached_host:
            domain = host.rsplit(":", 1)[0] if host else self._settings.domain_name
            self._domain = (host, domain)
        now = self._clock.wall()
        event = build_event(
            method=request.method,
            raw_path=request.raw_path,
            raw_query=request.query,
            headers=request.headers,
            body=request.body,
            source_ip=request.client,
            route_key=match.route_key,
            request_id=request_id,
            domain_name=domain,
            path_parameters=None,
            now=now,
            account_id=self._account_id,
            authorizer=authorizer,
        )
        # The event's headers hold every header but cookies: one absent there is absent from
        # the request, and most requests carry neither, so no pass over the request's headers.
        names = event["headers"]
        xray = request.header(XRAY_HEADER) if _XRAY_NAME in names else None
        traceparent = request.header(TRACEPARENT_HEADER) if _TRACEPARENT_NAME in names else None
        # _make: one is made per request.
        return _make(
            Call,
            (
                function,
                _event_json(event),
                request_id,
                self._arn(key),
                request.received + self._hold_seconds,
                None,
                False,
                request.disconnected,
                incoming(xray, traceparent, now=now),
            ),
        )

    def answer(self, call: Call, invocation: Invocation) -> Response:
        """The function's answer as API Gateway maps a payload 2.0 response."""
        upstream = invocation.response
        if upstream.status != 200:
            if upstream.status == 413:
                raise PayloadTooLarge(
                    "the request, as an event, is over the function's 6 MB payload limit"
                )
            raise UpstreamFailed(f"the instance answered HTTP {upstream.status}")
        if upstream.header(b"x-amz-function-error") is not None:
            response = function_error_response()
        else:
            response = map_response(upstream.body)
        # The mapped answer's header list is its own (a new one each time): completed in place.
        headers = response.headers
        for name, _ in headers:
            if name in _FRAMING:
                # Framing is the gateway's business, not the function's.
                headers[:] = [h for h in headers if h[0] not in _FRAMING]
                break
        headers.append((b"apigw-requestid", call.request_id.encode("ascii")))
        timing = invocation.server_timing()
        if timing is not None:
            headers.append(timing)
        return response
