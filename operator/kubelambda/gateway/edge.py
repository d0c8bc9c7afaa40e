"""The gateway's two apps: the public one (trigger routes, Invoke API, reserved paths) and the
admin one (/metrics, /healthz). This is the edge: every GatewayError becomes an HTTP answer
here, and nowhere else.

The gateway's connections (connection.py) call each app's `respond`, which returns the
answer for them to write; each is also an ASGI app. A request whose body is all in is offered
first to the public app's `begin`, which answers a warm invocation without a task: sent at once
to a free slot, answered from the instance's callback (invocation.py's `Invoker.start`).

No framework: the public app is the proxying hot path, where a framework's routing and request
objects cost several times the gateway's own work (benchmarks/gateway_throughput.py); the admin
app has two fixed endpoints.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Callable, Mapping
from typing import Final, Protocol

from kubelambda.clock import Clock
from kubelambda.gateway.exceptions import (
    ClientDisconnected,
    GatewayError,
    JwtRefused,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RequestTimeout,
    Throttled,
    Unauthorized,
    Unavailable,
)
from kubelambda.gateway.http import Handler, Receive, Request, Response, Scope, Send
from kubelambda.gateway.invocation import Call, Invocation, Invoker
from kubelambda.gateway.metrics import CONTENT_TYPE, GatewayMetrics
from kubelambda.gateway.sources.invoke_api import INVOKE_PREFIX
from kubelambda.gateway.sources.management import LAMBDA_API_PREFIX

__all__ = ["RESERVED_PREFIX", "AdminApp", "InvokingHandler", "PublicApp", "error_response"]

log = logging.getLogger(__name__)

RESERVED_PREFIX: Final = "/_kubelambda/"
# Of the Lambda API's paths, FUNCTION/invocations go to the Invoke API; the rest to the
# management API (a Function may be named "invocations").
_INVOCATIONS: Final = "/invocations"
_OWN_PREFIXES: Final = (LAMBDA_API_PREFIX, RESERVED_PREFIX)  # INVOKE_PREFIX is under the first
_JSON: Final = (b"content-type", b"application/json")
# Not a real HTTP status: the client went away before we could answer (as nginx logs it).
_CLIENT_GONE: Final = 499


def error_response(
    exc: GatewayError, *, request_id: str | None = None, http_api: bool = False
) -> Response:
    """The one mapping of gateway errors to HTTP: status, AWS error type, a JSON body.

    A JWT authorizer's refusal is answered as API Gateway's HTTP APIs answer it: only
    `{"message":"Unauthorized"}` (or "Forbidden") and a `www-authenticate` challenge. A
    function's own limit (Throttled) is answered in its caller's dialect: API Gateway's
    throttled route on an HTTP Trigger (`http_api`), Lambda's Invoke answer otherwise.
    """
    if isinstance(exc, Throttled):
        return _throttled(exc, request_id=request_id, http_api=http_api)
    if isinstance(exc, JwtRefused):
        return Response(
            status=exc.status,
            headers=[_JSON, (b"www-authenticate", exc.challenge.encode("latin-1"))],
            body=b'{"message":"%s"}' % exc.message.encode("ascii"),
        )
    body = json.dumps(
        {"Type": exc.fault, "errorType": exc.error_type, "message": exc.message}
    ).encode("utf-8")
    headers = [_JSON, (b"x-amzn-errortype", exc.error_type.encode("ascii"))]
    if exc.retry_after is not None:
        headers.append((b"retry-after", str(math.ceil(exc.retry_after)).encode("ascii")))
    if isinstance(exc, MethodNotAllowed):
        headers.append((b"allow", ", ".join(sorted(exc.allowed)).encode("ascii")))
    elif isinstance(exc, Unauthorized):
        headers.append((b"www-authenticate", b'Bearer realm="kubelambda"'))
    if request_id is not None:
        headers.append((b"x-amzn-requestid", request_id.encode("ascii")))
    return Response(status=exc.status, headers=headers, body=body)


def _throttled(exc: Throttled, *, request_id: str | None, http_api: bool) -> Response:
    """429 as API Gateway answers a throttled route ({"message":"Too Many Requests"}), or as
    Lambda's Invoke answers TooManyRequestsException (with its Reason), which boto3 raises."""
    headers = [_JSON]
    if exc.retry_after is not None:  # none when waiting cannot help (reservedConcurrency 0)
        headers.append((b"retry-after", str(math.ceil(exc.retry_after)).encode("ascii")))
    if http_api:
        if request_id is not None:
            headers.append((b"apigw-requestid", request_id.encode("ascii")))
        return Response(status=429, headers=headers, body=b'{"message":"Too Many Requests"}')
    headers.append((b"x-amzn-errortype", exc.error_type.encode("ascii")))
    if request_id is not None:
        headers.append((b"x-amzn-requestid", request_id.encode("ascii")))
    body = {"Reason": exc.reason, "Type": exc.fault, "message": exc.message}
    return Response(status=429, headers=headers, body=json.dumps(body).encode("utf-8"))


async def _send(send: Send, response: Response) -> None:
    # An explicit length spares the chunked framing (and a write) of every answer;
    # handlers leave content-length out of their headers.
    headers = [*response.headers, (b"content-length", b"%d" % len(response.body))]
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": response.body})


async def _lifespan(receive: Receive, send: Send) -> None:
    # For servers that run lifespan anyway; the gateway starts its work in Gateway.serve.
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


class InvokingHandler(Protocol):
    """A source whose request becomes one invocation (HTTP Triggers, the Invoke API): served
    whole by calling it, or in two steps around `Invoker.start` when nothing needs waiting for."""

    async def __call__(self, request: Request) -> Response: ...

    def prepare(self, request: Request) -> Call | None:
        """The invocation `request` asks for, its checks passed; None when the source must
        wait for something first (call it instead). Raises GatewayError as calling it would."""
        ...

    def answer(self, call: Call, invocation: Invocation) -> Response:
        """The client's answer to `call`, from the instance's."""
        ...


class PublicApp:
    """Dispatches by path: the Lambda API (Invoke, and the management API's other calls),
    reserved `/_kubelambda/` endpoints, trigger routes."""

    def __init__(
        self,
        *,
        triggers: InvokingHandler,
        invoke_api: InvokingHandler,
        management_api: Handler,
        invoker: Invoker,
        reserved: Mapping[str, Handler],
        metrics: GatewayMetrics,
        clock: Clock,
        max_body_bytes: int,
        body_timeout_seconds: float = 30.0,
        max_buffered_body_bytes: int = 128 * 1024 * 1024,
        retry_after_seconds: int = 1,
    ) -> None:
        self._triggers = triggers
        self._invoke_api = invoke_api
        self._management_api = management_api
        self._invoker = invoker
        # Endpoints under /_kubelambda/ by exact path; S3 notifications
        # (/_kubelambda/events/s3) are registered here by create_gateway.
        self._reserved = dict(reserved)
        self._metrics = metrics
        self._clock = clock
        self._max_body = max_body_bytes
        self._body_timeout = body_timeout_seconds
        self._max_buffered = max_buffered_body_bytes
        self._retry_after = retry_after_seconds
        self._buffered = 0  # body bytes held by all requests being read or served

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI, for servers other than the gateway's own connections (connection.py)."""
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await _lifespan(receive, send)
            return
        response = await self.respond(Request.from_scope(scope, receive))
        if response is not None:
            await _send(send, response)

    async def respond(self, request: Request) -> Response | None:
        """The answer to one request, counted in the metrics; None when the client left
        before it could be answered."""
        request.received = self._clock.monotonic()
        held = [0]  # this request's share of self._buffered
        read = False  # the whole body arrived
        http_api = False  # an HTTP Trigger's route: its errors answered as API Gateway's
        try:
            if request.complete:  # all in already: nothing to wait for
                # No body and none declared (a GET, mostly): nothing to check or hold.
                if request.body or request.content_length:
                    self._take_body(request, request.body, held)
                read = True
            else:
                try:
                    async with asyncio.timeout(self._body_timeout):
                        request.body = await self._read_body(request, held)
                        read = True
                except TimeoutError:
                    raise RequestTimeout(
                        f"the request body did not arrive within {self._body_timeout:g} s"
                    ) from None
            path = request.path
            invoking = self._invoking(path)
            if invoking is not None:
                http_api = invoking is self._triggers
                response = await invoking(request)
            elif path.startswith(LAMBDA_API_PREFIX):
                response = await self._management_api(request)
            else:
                handler = self._reserved.get(path)
                if handler is None:
                    raise NotFound(
                        f"{path}: no such endpoint; paths under {RESERVED_PREFIX} are reserved"
                    )
                response = await handler(request)
        except BaseException as exc:
            failed = self._failed(request, exc, http_api=http_api)
            if failed is None:
                return None
            response = failed
            if not read and isinstance(exc, GatewayError):
                # What is left of the body is never read: the connection cannot carry
                # another request.
                response.headers.append((b"connection", b"close"))
        finally:
            self._buffered -= held[0]
        self._metrics.request(
            request.function, response.status, self._clock.monotonic() - request.received
        )
        return response

    def begin(self, request: Request, answered: Callable[[Response | None], None]) -> bool:
        """Answer `request`, whose body is all in, when it is one invocation its source can
        prepare at once (`Invoker.start`: without a task when a slot is free now): `answered`
        is told the answer, once, as `respond` would return it, maybe before this returns.
        False when it is not such a request: nothing was done, and `respond` answers it."""
        source = self._invoking(request.path)
        if source is None:
            return False
        request.received = self._clock.monotonic()
        held = [0]
        http_api = source is self._triggers
        try:
            # No body and none declared (a GET, mostly): nothing to check or hold.
            if request.body or request.content_length:
                self._take_body(request, request.body, held)
            call = source.prepare(request)
            if call is not None:
                self._invoker.start(
                    call, _Answering(self, request, source, call, held[0], http_api, answered)
                )
                return True
        except BaseException as exc:
            self._buffered -= held[0]
            response = self._failed(request, exc, http_api=http_api)
            if response is not None:
                self._answer(request, response, answered)
            return True
        self._buffered -= held[0]
        return False

    def _invoking(self, path: str) -> InvokingHandler | None:
        """The source serving `path` with one invocation per request, if one does."""
        # One question for a trigger's path, the usual, rather than one per prefix.
        if not path.startswith(_OWN_PREFIXES):
            return self._triggers
        if path.startswith(INVOKE_PREFIX) and path[len(INVOKE_PREFIX) :].endswith(_INVOCATIONS):
            return self._invoke_api
        return None

    def _failed(self, request: Request, exc: BaseException, *, http_api: bool) -> Response | None:
        """The answer to a request whose handling raised `exc`, or None when its client left
        (counted); other BaseExceptions (a task cancelled) are raised again."""
        if isinstance(exc, GatewayError):
            return error_response(exc, request_id=request.request_id, http_api=http_api)
        if isinstance(exc, ClientDisconnected):
            self._metrics.request(
                request.function, _CLIENT_GONE, self._clock.monotonic() - request.received
            )
            return None
        if not isinstance(exc, Exception):
            raise exc
        # Never a stack trace to the client: log it, answer a plain 500.
        log.error("unexpected error serving %s %s", request.method, request.path, exc_info=exc)
        return error_response(
            GatewayError("the gateway failed to handle this request; see its logs"),
            request_id=request.request_id,
        )

    def _answer(
        self, request: Request, response: Response, answered: Callable[[Response | None], None]
    ) -> None:
        self._metrics.request(
            request.function, response.status, self._clock.monotonic() - request.received
        )
        answered(response)

    def _hold(self, held: list[int], size: int) -> None:
        """Count `size` more body bytes against the gateway's bound, or refuse at once."""
        if self._buffered + size > self._max_buffered:
            raise Unavailable(
                "the gateway holds as many request bodies as it may; try again later",
                retry_after=self._retry_after,
            )
        self._buffered += size
        held[0] += size

    def _check_length(self, request: Request, held: list[int]) -> None:
        limit = self._max_body
        if request.content_length is not None and request.content_length > limit:
            raise PayloadTooLarge(
                f"request body of {request.content_length} bytes is over the {limit} byte limit"
            )
        if request.content_length:
            self._hold(held, request.content_length)  # refused before a byte is read

    def _take_body(self, request: Request, body: bytes, held: list[int]) -> None:
        """The checks of `_read_body` on a body that arrived whole before it was asked for."""
        self._check_length(request, held)
        if len(body) > self._max_body:
            raise PayloadTooLarge(f"request body is over the {self._max_body} byte limit")
        if len(body) > held[0]:  # chunked: no length was declared to hold up front
            self._hold(held, len(body) - held[0])

    async def _read_body(self, request: Request, held: list[int]) -> bytes:
        limit = self._max_body
        receive = request.receive
        self._check_length(request, held)
        message = await receive()
        body: bytes = message.get("body", b"")
        if not message.get("more_body"):
            if message["type"] == "http.disconnect":
                raise ClientDisconnected()
            return body
        chunks = [body]
        size = len(body)
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnected()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"request body is over the {limit} byte limit")
            if size > held[0]:  # chunked: no length was declared to hold up front
                self._hold(held, size - held[0])
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)


class _Answering:
    """The end of a request `PublicApp.begin` started: the source's answer to the invocation,
    or the error's, counted and handed to the connection. (A class rather than a closure:
    compiled, a native call.)"""

    __slots__ = ("_answered", "_app", "_call", "_held", "_http_api", "_request", "_source")

    def __init__(
        self,
        app: PublicApp,
        request: Request,
        source: InvokingHandler,
        call: Call,
        held: int,
        http_api: bool,
        answered: Callable[[Response | None], None],
    ) -> None:
        self._app = app
        self._request = request
        self._source = source
        self._call = call
        self._held = held
        self._http_api = http_api
        self._answered = answered

    def __call__(self, outcome: Invocation | BaseException) -> None:
        app = self._app
        app._buffered -= self._held
        if isinstance(outcome, BaseException):
            # Not raised here: its traceback would hold this frame, which holds it (a cycle).
            self._failed(outcome)
            return
        try:
            response = self._source.answer(self._call, outcome)
        except Exception as exc:
            self._failed(exc)
            return
        app._answer(self._request, response, self._answered)

    def _failed(self, exc: BaseException) -> None:
        if not isinstance(exc, Exception):  # the task going on was cancelled: no answer
            self._answered(None)
            return
        response = self._app._failed(self._request, exc, http_api=self._http_api)
        if response is None:
            self._answered(None)
        else:
            self._app._answer(self._request, response, self._answered)


class AdminApp:
    """`GET /metrics` (Prometheus text format) and `GET /healthz`."""

    def __init__(self, *, metrics: GatewayMetrics) -> None:
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await _lifespan(receive, send)
            return
        await _send(send, await self.respond(Request.from_scope(scope, receive)))

    async def respond(self, request: Request) -> Response:
        """The answer to one request."""
        path = request.path
        if request.method not in ("GET", "HEAD"):
            response = error_response(
                MethodNotAllowed(
                    f"{request.method} is not allowed on {path}",
                    allowed=frozenset({"GET", "HEAD"}),
                )
            )
        elif path == "/metrics":
            response = Response(
                status=200,
                headers=[(b"content-type", CONTENT_TYPE.encode("ascii"))],
                body=self._metrics.render(),
            )
        elif path == "/healthz":
            response = Response(status=200, headers=[_JSON], body=b'{"status":"ok"}')
        else:
            response = error_response(
                NotFound(f"{path}: the admin port serves /metrics and /healthz")
            )
        return response
