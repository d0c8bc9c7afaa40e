"""Errors of the gateway's data path; the edge (`edge.py`) maps them to HTTP answers, in one place.

Each carries what the edge needs (status, AWS error type, a message naming the problem,
Retry-After) and what a retrying caller needs (`retryable`: asynchronous delivery tries
again later without spending one of the event's retries). The hierarchy::

    GatewayError                      status  x-amzn-ErrorType
    ├── NotFound                       404    ResourceNotFoundException
    │   ├── RouteNotFound              404      no HTTP Trigger route matches
    │   ├── FunctionNotFound           404      no such Function, or qualifier not $LATEST
    │   └── UnknownOperation           404    UnknownOperationException
    ├── Forbidden                      403    ForbiddenException (API key missing or wrong)
    ├── AccessDenied                   403    (AWS's type: the Invoke API's signature or grant)
    ├── RequestTimeout                 408    RequestTimeoutException (the body came too slowly)
    ├── Unauthorized                   401    UnauthorizedException (S3 notification token)
    ├── JwtRefused                            a route's JWT authorizer said no; answered as API
    │   │                                     Gateway does: {"message"} and www-authenticate
    │   ├── JwtUnauthorized            401      no token, or one that does not verify
    │   └── JwtForbidden               403      a valid token without a scope the route wants
    ├── MethodNotAllowed               405    MethodNotAllowedException
    ├── BadRequest                     400    InvalidRequestContentException
    │   └── InvalidParameter           400    InvalidParameterValueException / ValidationException
    ├── PayloadTooLarge                413    RequestTooLargeException
    ├── TooManyRequests                429    TooManyRequestsException   (retryable)
    │   └── Throttled                  429      a function's reservedConcurrency or throttling
    │                                           refused it; answered as Lambda (Invoke API) or
    │                                           API Gateway (HTTP triggers) do (limits.py)
    ├── Unavailable                    503    ServiceException           (retryable)
    │   ├── HoldQueueFull              503      the function's held requests are as many, or
    │   │                                       would wait as long, as the gateway allows
    │   └── GatewayOverloaded          503      the gateway runs too late to take more
    ├── DeadlineExceeded               504    ResourceNotReadyException  (retryable)
    │   └── UpstreamTimeout            504    ServiceException: the instance did not answer
    └── UpstreamFailed                 502    ServiceException: the instance broke the contract

    InstanceUnavailable   not a GatewayError: the chosen instance refused the connection
                          or was busy; the invoker tries another and no client sees it.
    ClientDisconnected    not a GatewayError: the client left (while its body was read, or
                          while it was held); there is nobody to answer.
"""

from __future__ import annotations

__all__ = [
    "AccessDenied",
    "BadRequest",
    "ClientDisconnected",
    "DeadlineExceeded",
    "Forbidden",
    "FunctionNotFound",
    "GatewayError",
    "GatewayOverloaded",
    "HoldQueueFull",
    "InstanceUnavailable",
    "InvalidParameter",
    "JwtForbidden",
    "JwtRefused",
    "JwtUnauthorized",
    "MethodNotAllowed",
    "NotFound",
    "PayloadTooLarge",
    "RequestTimeout",
    "RouteNotFound",
    "Throttled",
    "TooManyRequests",
    "Unauthorized",
    "Unavailable",
    "UnknownOperation",
    "UpstreamFailed",
    "UpstreamTimeout",
]


class GatewayError(Exception):
    """An answer the gateway gives instead of the function's; `message` is shown to the client."""

    status = 500
    error_type = "ServiceException"
    # AWS's error body says whether the caller ("User") or the service is at fault.
    fault = "Service"
    retryable = False

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class NotFound(GatewayError):
    status = 404
    error_type = "ResourceNotFoundException"
    fault = "User"


class RouteNotFound(NotFound):
    """No HTTP Trigger route matches the request's host, path and method."""


class FunctionNotFound(NotFound):
    """The Function named by the Invoke API or a Trigger does not exist (or its qualifier)."""


class UnknownOperation(NotFound):
    """A Lambda API path other than Invoke."""

    error_type = "UnknownOperationException"


class Forbidden(GatewayError):
    """The route wants an API key and the request has none, or the wrong one."""

    status = 403
    error_type = "ForbiddenException"
    fault = "User"


class AccessDenied(GatewayError):
    """The Invoke API's caller did not sign the request with a known key, or its key may not
    invoke the function; `error_type` is AWS's name for which (MissingAuthenticationToken,
    UnrecognizedClient, InvalidSignature, AccessDenied)."""

    status = 403
    fault = "User"

    def __init__(self, message: str, *, error_type: str) -> None:
        super().__init__(message)
        self.error_type = error_type


class Unauthorized(GatewayError):
    """An S3 notification carries no bearer token, or not the configured one."""

    status = 401
    error_type = "UnauthorizedException"
    fault = "User"


class JwtRefused(GatewayError):
    """A route's JWT authorizer refused the request. `message` is API Gateway's own word
    ("Unauthorized", "Forbidden"); `challenge` is the www-authenticate value; `reason` says
    why, for the gateway's log (the client learns it from the challenge)."""

    fault = "User"

    def __init__(self, message: str, *, reason: str, challenge: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.challenge = challenge


class JwtUnauthorized(JwtRefused):
    """No token where the route's identity source says, or one that fails a check."""

    status = 401
    error_type = "UnauthorizedException"

    def __init__(self, reason: str, *, challenge: str) -> None:
        super().__init__("Unauthorized", reason=reason, challenge=challenge)


class JwtForbidden(JwtRefused):
    """A valid token that holds none of the scopes the route wants."""

    status = 403
    error_type = "ForbiddenException"

    def __init__(self, reason: str, *, challenge: str) -> None:
        super().__init__("Forbidden", reason=reason, challenge=challenge)


class MethodNotAllowed(GatewayError):
    """A route matches the path but not the method; `allowed` feeds the Allow header."""

    status = 405
    error_type = "MethodNotAllowedException"
    fault = "User"

    def __init__(self, message: str, *, allowed: frozenset[str]) -> None:
        super().__init__(message)
        self.allowed = allowed


class BadRequest(GatewayError):
    status = 400
    error_type = "InvalidRequestContentException"
    fault = "User"


class InvalidParameter(BadRequest):
    """A header, query parameter or FunctionName the Invoke API does not accept."""

    def __init__(self, message: str, *, error_type: str = "InvalidParameterValueException") -> None:
        super().__init__(message)
        self.error_type = error_type


class RequestTimeout(GatewayError):
    """The request's body did not arrive within the gateway's body timeout."""

    status = 408
    error_type = "RequestTimeoutException"
    fault = "User"


class PayloadTooLarge(GatewayError):
    status = 413
    error_type = "RequestTooLargeException"
    fault = "User"


class TooManyRequests(GatewayError):
    """The asynchronous delivery queue is full; the client should try again later."""

    status = 429
    error_type = "TooManyRequestsException"
    fault = "User"
    retryable = True


class Throttled(TooManyRequests):
    """A function's own limit refused the invocation before it ran (gateway/limits.py).

    `reason` is Lambda's ThrottleReason (ReservedFunctionConcurrentInvocationLimitExceeded,
    FunctionInvocationRateLimitExceeded); `message` is Lambda's own "Rate Exceeded." and
    `detail` says which limit, for the gateway's log. No Retry-After when waiting cannot help
    (reservedConcurrency 0).
    """

    def __init__(self, detail: str, *, reason: str, retry_after: float | None) -> None:
        super().__init__("Rate Exceeded.", retry_after=retry_after)
        self.reason = reason
        self.detail = detail


class Unavailable(GatewayError):
    status = 503
    retryable = True


class HoldQueueFull(Unavailable):
    """Too many requests are already held for this function, or its busy instances would not
    reach one more in time: answered at once, with Retry-After, instead of held."""


class GatewayOverloaded(Unavailable):
    """The gateway's event loop runs later than its bound: every request would wait that long
    before anything is done with it, so new ones are refused at once, with Retry-After."""


class DeadlineExceeded(GatewayError):
    """No instance became ready (or free) before the request's hold deadline."""

    status = 504
    error_type = "ResourceNotReadyException"
    retryable = True


class UpstreamTimeout(DeadlineExceeded):
    """The instance did not answer within the function's timeout and a grace period.

    Not retryable: the function may have run (and may still be running).
    """

    error_type = "ServiceException"
    retryable = False


class UpstreamFailed(GatewayError):
    """The instance closed the connection mid-answer or answered outside the contract."""

    status = 502


class InstanceUnavailable(Exception):
    """The instance refused the connection or could not be reached; nothing was sent to it.

    `sent` is false when the request certainly did not reach the function, which makes
    sending it to another instance safe.
    """

    def __init__(self, message: str, *, sent: bool = False) -> None:
        super().__init__(message)
        self.sent = sent


class ClientDisconnected(Exception):
    """The client closed its connection before the gateway answered."""
