"""An invocation as the invoke endpoint receives it, and its answer as the endpoint gives it.

Both the server (for requests it passes to a worker) and a worker serving a connection
directly read requests and write answers through here, so the two paths agree on every
header of docs/contracts.md.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, NamedTuple

from kubelambda_runtime.wire import faults, ids
from kubelambda_runtime.wire.http1 import Response

INVOKE_PATH = "/2015-03-31/functions/function/invocations"

JSON = (b"content-type", b"application/json")
REQUEST_ID = b"lambda-runtime-aws-request-id"
# The invocation's billed duration (whole ms, as in its REPORT line), for the gateway's usage
# metrics (docs/contracts.md); the gateway does not pass it on to callers.
BILLED_DURATION = b"x-kubelambda-billed-duration-ms"


class Invocation(NamedTuple):
    request_id: str
    body: bytes
    deadline_ms: int | None = None
    arn: str | None = None
    client_context: str | None = None
    identity: str | None = None
    tail: bool = False
    trace_id: str | None = None
    tenant_id: str | None = None

    @classmethod
    def of(cls, headers: Mapping[bytes, bytes], body: bytes) -> Invocation:
        """From the invoke request's headers (lower-cased names) and body. Each field is read
        from the Runtime API's header or else from the one the Runtime Interface Emulator
        takes on its invoke endpoint, so a caller of an AWS base image can call this runtime
        unchanged (aws-lambda-runtime-interface-emulator: X-Amzn-RequestId, X-Amz-Client-Context
        base64 as boto3 sends it, X-Amzn-Trace-Id, X-Amz-Tenant-Id)."""
        deadline = headers.get(b"lambda-runtime-deadline-ms", b"")
        return cls(
            request_id=_first(headers, REQUEST_ID, b"x-amzn-requestid") or ids.uuid4(),
            body=body,
            deadline_ms=int(deadline) if deadline.isdigit() else None,
            arn=_text(headers.get(b"lambda-runtime-invoked-function-arn")),
            client_context=_first(
                headers, b"lambda-runtime-client-context", b"x-amz-client-context"
            ),
            identity=_first(headers, b"lambda-runtime-cognito-identity", b"x-amz-cognito-identity"),
            tail=headers.get(b"x-amz-log-type", b"").lower() == b"tail",
            trace_id=_first(headers, b"lambda-runtime-trace-id", b"x-amzn-trace-id"),
            tenant_id=_first(headers, b"lambda-runtime-aws-tenant-id", b"x-amz-tenant-id"),
        )

    def deadline(self, *, timeout_seconds: float, now: float) -> int:
        """When the invocation must end, epoch milliseconds: the caller's deadline, but never
        later than the function's timeout from `now` (a caller cannot extend the timeout)."""
        latest = int((now + timeout_seconds) * 1000)
        return latest if self.deadline_ms is None else min(self.deadline_ms, latest)


def _text(value: bytes | None) -> str | None:
    return value.decode("latin-1") if value else None


def _first(headers: Mapping[bytes, bytes], *names: bytes) -> str | None:
    for name in names:
        value = _text(headers.get(name))
        if value:
            return value
    return None


def answer(
    request_id: str,
    body: bytes,
    *,
    status: int = 200,
    function_error: bool = False,
    log_tail: str | None = None,
    billed_ms: int | None = None,
) -> Response:
    """The invoke endpoint's answer: the result (or error document) with Lambda's headers,
    and the billed duration of an invocation that ran."""
    headers = [JSON, (REQUEST_ID, request_id.encode())]
    if function_error:
        headers.append((b"x-amz-function-error", b"Unhandled"))
    if log_tail is not None:
        headers.append((b"x-amz-log-result", log_tail.encode()))
    if billed_ms is not None:
        headers.append((BILLED_DURATION, str(billed_ms).encode()))
    return Response(status, body, headers)


def json_answer(
    status: int, document: dict[str, Any], *, request_id: str | None = None
) -> Response:
    headers = [JSON]
    if request_id is not None:
        headers.append((REQUEST_ID, request_id.encode()))
    return Response(status, json.dumps(document).encode(), headers)


def bad_body(request_id: str, message: str) -> Response:
    """400 for an event that is not JSON."""
    error = faults.api_error("InvalidRequestContentException", message)
    return json_answer(400, error, request_id=request_id)
