"""The Lambda Invoke API: `POST /2015-03-31/functions/{FunctionName}/invocations`, as boto3's
`lambda` client and `aws lambda invoke --endpoint-url` send it.

The public app hands every path under `/2015-03-31/functions/` to `InvokeApi`. It answers
RequestResponse (200), Event (202, then asynchronous delivery) and DryRun (204).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
from typing import Final
from urllib.parse import parse_qs, unquote

from kubelambda import jsonvalue
from kubelambda.api.identity import FunctionKey, function_arn
from kubelambda.clock import Clock
from kubelambda.delivery.jobs import DeliveryJob, trace_value
from kubelambda.delivery.store import DeliveryStore
from kubelambda.gateway.access import AccessKey, AccessKeys, authenticate, authorise
from kubelambda.gateway.current import Current
from kubelambda.gateway.exceptions import (
    BadRequest,
    GatewayError,
    InvalidParameter,
    MethodNotAllowed,
    PayloadTooLarge,
    TooManyRequests,
    Unavailable,
    UnknownOperation,
    UpstreamFailed,
)
from kubelambda.gateway.http import Request, Response
from kubelambda.gateway.ids import new_request_id
from kubelambda.gateway.invocation import Call, Invocation, Invoker
from kubelambda.gateway.routing import FunctionEntry
from kubelambda.gateway.settings import GatewaySettings
from kubelambda.gateway.tracing import TRACEPARENT_HEADER, XRAY_HEADER, incoming

__all__ = ["INVOKE_PREFIX", "InvokeApi"]

log = logging.getLogger(__name__)

# A dispatcher delivering an Event invocation sends its id, so the function sees the id the
# event was accepted with (context.aws_request_id), as on Lambda. Only a UUID is taken.
REQUEST_ID_HEADER: Final = b"x-kubelambda-request-id"
_UUID: Final = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


_INVOCATION_TYPE: Final = b"x-amz-invocation-type"
_LOG_TYPE: Final = b"x-amz-log-type"
_CLIENT_CONTEXT: Final = b"x-amz-client-context"
# The headers the Invoke API reads, found in one pass over the request's.
_READ: Final = frozenset(
    {
        REQUEST_ID_HEADER,
        _INVOCATION_TYPE,
        _LOG_TYPE,
        _CLIENT_CONTEXT,
        XRAY_HEADER,
        TRACEPARENT_HEADER,
    }
)
# ARNs made, by Function: bounded, emptied when full.
_MAX_ARNS: Final = 4096
# FunctionNames read from request paths, by path: most requests name a few functions, and
# splitting and unquoting a path cost as much again as resolving the name (issue 17). Bounded
# in entries and in the length of the path kept; emptied when full. Only names that parsed.
_MAX_NAMES: Final = 1024
_NAME_PATH_CHARS: Final = 512
_names: Final[dict[str, str]] = {}
# Makes a NamedTuple without its own __new__, a Python function: half the cost per record.
_make: Final = tuple.__new__


def _read_headers(request: Request) -> dict[bytes, str]:
    """The first value of each header in _READ the request has (as `Request.header` finds it)."""
    found: dict[bytes, str] = {}
    for name, value in request.headers:
        if name in _READ and name not in found:
            found[name] = value.decode("latin-1")
    return found


def _request_id(headers: dict[bytes, str]) -> str:
    given = headers.get(REQUEST_ID_HEADER)
    invocation_type = headers.get(_INVOCATION_TYPE)
    if given and _UUID.match(given) and invocation_type in (None, "RequestResponse"):
        return given
    return new_request_id()


INVOKE_PREFIX: Final = "/2015-03-31/functions/"
_SUFFIX: Final = "/invocations"
_JSON: Final = (b"content-type", b"application/json")
_EXECUTED: Final = (b"x-amz-executed-version", b"$LATEST")
_FUNCTION_ERROR: Final = b"x-amz-function-error"
_LOG_RESULT: Final = b"x-amz-log-result"
# AWS caps the client context at 3583 bytes (base64).
_CLIENT_CONTEXT_LIMIT: Final = 3583


class InvokeApi:
    """Serves the Invoke operation of the Lambda API."""

    def __init__(
        self,
        *,
        routes: Current,
        invoker: Invoker,
        store: DeliveryStore,
        clock: Clock,
        settings: GatewaySettings,
        access_keys: AccessKeys,
    ) -> None:
        self._access_keys = access_keys
        self._routes = routes
        self._invoker = invoker
        self._store = store
        self._clock = clock
        self._settings = settings
        self._arns: dict[FunctionKey, tuple[str, bytes]] = {}

    def _arn(self, key: FunctionKey) -> tuple[str, bytes]:
        """The function's ARN, as text and as the bytes the invocation sends."""
        arn = self._arns.get(key)
        if arn is None:
            if len(self._arns) >= _MAX_ARNS:
                self._arns.clear()
            settings = self._settings
            text = function_arn(
                key,
                region=settings.region,
                account_id=settings.account_id,
                default_namespace=settings.default_namespace,
            )
            arn = self._arns[key] = (text, text.encode("ascii"))
        return arn

    async def __call__(self, request: Request) -> Response:
        headers = _read_headers(request)
        invocation_type, request_id, function, arn, client_context = self._check(request, headers)
        request_header = (b"x-amzn-requestid", request_id.encode("ascii"))
        if invocation_type == "DryRun":
            return Response(status=204, headers=[request_header], body=b"")
        if invocation_type == "Event":
            await self._accept(request, request_id, headers, function, arn, client_context)
            return Response(status=202, headers=[request_header], body=b"")
        call = self._call(request, request_id, headers, function, client_context)
        return self.answer(call, await self._invoker.run(call))

    def prepare(self, request: Request) -> Call | None:
        """The invocation `request` asks for, when it is synchronous (RequestResponse): None
        for Event and DryRun, answered without one."""
        headers = _read_headers(request)
        if headers.get(_INVOCATION_TYPE, "RequestResponse") != "RequestResponse":
            return None
        _, request_id, function, _, client_context = self._check(request, headers)
        return self._call(request, request_id, headers, function, client_context)

    def _check(
        self, request: Request, headers: dict[bytes, str]
    ) -> tuple[str, str, FunctionEntry, str, bytes | None]:
        """The invocation type, request id, Function, its ARN and the client context of a valid
        request by a caller the Function admits."""
        request_id = request.request_id = _request_id(headers)
        function_name = _function_name(request.raw_path)
        if request.method != "POST":
            raise MethodNotAllowed(
                f"the Invoke API takes POST, not {request.method}", allowed=frozenset({"POST"})
            )
        qualifier = None
        if request.query:
            query = parse_qs(request.query.decode("latin-1"))
            qualifier = query.get("Qualifier", [None])[-1]
        invocation_type = headers.get(_INVOCATION_TYPE) or "RequestResponse"
        log_type = headers.get(_LOG_TYPE) or "None"
        if invocation_type not in ("RequestResponse", "Event", "DryRun"):
            raise InvalidParameter(
                f"X-Amz-Invocation-Type {invocation_type!r}: use RequestResponse, Event or DryRun"
            )
        if log_type not in ("None", "Tail"):
            raise InvalidParameter(f"X-Amz-Log-Type {log_type!r}: use None or Tail")
        context_header = headers.get(_CLIENT_CONTEXT)
        # Most requests carry none: no call.
        client_context = None if context_header is None else _client_context(context_header)

        function, key = self._resolve(request, function_name, qualifier)
        request.function = function.key
        body = request.body
        if invocation_type == "Event" and len(body) > self._settings.max_async_body_bytes:
            raise PayloadTooLarge(
                f"{len(body)} byte payload is over the {self._settings.max_async_body_bytes} "
                "byte limit of asynchronous invocations"
            )
        if invocation_type != "RequestResponse":
            # Refused before it is accepted (202) or said to be fine (204). A synchronous
            # payload is parsed by the instance, which must read it anyway: its 400 for one
            # that is not JSON comes back as this would (answer), without a second parse here
            # (~20,000 instructions for a 1 KB event, an eighth of the request's).
            _check_json(body)
        arn = self._arn(function.key)[0]
        if key is not None:
            authorise(key, function.key, arn=arn)
        return invocation_type, request_id, function, arn, client_context

    async def _accept(
        self,
        request: Request,
        request_id: str,
        headers: dict[bytes, str],
        function: FunctionEntry,
        arn: str,
        client_context: bytes | None,
    ) -> None:
        """Record an Event invocation for asynchronous delivery, or refuse it."""
        settings = self._settings
        # The trace the event is accepted in: every try and its destinations join it.
        trace = incoming(
            headers.get(XRAY_HEADER), headers.get(TRACEPARENT_HEADER), now=self._clock.wall()
        )
        job = DeliveryJob(
            id=request_id,
            payload=request.body,
            policy=function.delivery,
            invoked_arn=arn,
            enqueued_at=self._clock.wall(),
            function=function.key,
            client_context=client_context,
            trace=trace_value(trace.root, trace.parent_id, trace.sampled, trace.extra),
        )
        try:
            # 202 only once the store (a broker, a synced file) holds the event.
            accepted = await self._store.admit([job])
        except OSError as exc:
            log.error("cannot record event %s: %s", request_id, exc)
            raise Unavailable(
                "the gateway cannot record this event now; try again later",
                retry_after=settings.retry_after_seconds,
            ) from None
        if not accepted:
            raise TooManyRequests(
                "the asynchronous invocation queue is full; try again later",
                retry_after=settings.retry_after_seconds,
            )

    def _call(
        self,
        request: Request,
        request_id: str,
        headers: dict[bytes, str],
        function: FunctionEntry,
        client_context: bytes | None,
    ) -> Call:
        # _make: one is made per request.
        return _make(
            Call,
            (
                function,
                request.body,
                request_id,
                self._arn(function.key)[1],
                request.received + self._settings.hold_timeout_seconds,
                client_context,
                headers.get(_LOG_TYPE) == "Tail",
                request.disconnected,
                incoming(
                    headers.get(XRAY_HEADER),
                    headers.get(TRACEPARENT_HEADER),
                    now=self._clock.wall(),
                ),
            ),
        )

    def answer(self, call: Call, invocation: Invocation) -> Response:
        """The instance's answer as Lambda's Invoke returns it."""
        upstream = invocation.response
        if upstream.status != 200:
            message = _error_message(upstream.body)
            if upstream.status == 413:
                raise PayloadTooLarge(message or "payload over the function's limit")
            if upstream.status == 400:
                raise BadRequest(message or "the function's runtime refused the payload")
            raise UpstreamFailed(f"the instance answered HTTP {upstream.status}: {message}")
        answer = [_JSON, (b"x-amzn-requestid", call.request_id.encode("ascii")), _EXECUTED]
        # The first of each of the two headers passed on, in one pass over the answer's.
        function_error = log_result = None
        for name, value in upstream.headers:
            if name == _FUNCTION_ERROR:
                if function_error is None:
                    function_error = value
            elif name == _LOG_RESULT and log_result is None:
                log_result = value
        if function_error is not None:
            answer.append((_FUNCTION_ERROR, function_error))
        if log_result is not None:
            answer.append((_LOG_RESULT, log_result))
        timing = invocation.server_timing()
        if timing is not None:
            answer.append(timing)
        # _make: one is made per request.
        return _make(Response, (200, answer, upstream.body))

    def _resolve(
        self, request: Request, name: str, qualifier: str | None
    ) -> tuple[FunctionEntry, AccessKey | None]:
        """The function named, and the key that signed the request (None when none is
        needed: auth is off, or the function takes anonymous callers). The signature is
        checked before a missing name is reported: an unsigned request learns nothing of
        which functions exist."""
        auth = self._settings.invoke_auth
        try:
            function = self._routes.resolve(name, qualifier)
        except GatewayError:
            if auth:
                authenticate(request, self._access_keys, now=self._clock.wall())
            raise
        if not auth or function.anonymous_invoke:
            return function, None
        return function, authenticate(request, self._access_keys, now=self._clock.wall())


def _function_name(raw_path: str) -> str:
    known = _names.get(raw_path)
    if known is not None:
        return known
    rest = raw_path[len(INVOKE_PREFIX) :]
    name, _, operation = rest.partition("/")
    if not name or "/" + operation != _SUFFIX:
        raise UnknownOperation(
            f"{raw_path}: this gateway serves only the Invoke operation, "
            "POST /2015-03-31/functions/{FunctionName}/invocations"
        )
    # boto3 percent-encodes ARNs (':') and $LATEST ('$') in the path.
    name = unquote(name)
    if len(raw_path) <= _NAME_PATH_CHARS:
        if len(_names) >= _MAX_NAMES:
            _names.clear()
        _names[raw_path] = name
    return name


def _client_context(value: str | None) -> bytes | None:
    if not value:
        return None
    if len(value) > _CLIENT_CONTEXT_LIMIT:
        raise InvalidParameter(
            f"X-Amz-Client-Context is over {_CLIENT_CONTEXT_LIMIT} bytes",
            error_type="ValidationException",
        )
    try:
        json.loads(base64.b64decode(value, validate=True))
    except (binascii.Error, ValueError, RecursionError) as exc:
        raise InvalidParameter(
            "X-Amz-Client-Context must be base64-encoded JSON",
            error_type="InvalidRequestContentException",
        ) from exc
    return value.encode("ascii")


def _check_json(body: bytes) -> None:
    if not body:
        return  # no payload: the runtime passes {} as the event
    try:
        jsonvalue.check(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # nested too deep
        raise BadRequest(f"Could not parse request body into json: {exc}") from None


def _error_message(body: bytes) -> str:
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return body[:200].decode("utf-8", "replace")
    if isinstance(document, dict):
        return str(document.get("errorMessage") or document.get("message") or "")
    return ""
