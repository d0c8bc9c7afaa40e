"""An invocation as a custom runtime's bootstrap gets it, and its error as the caller gets it.

``delivery`` turns an invocation of the invoke endpoint into what the Runtime API's ``next``
answers (the event and Lambda's ``Lambda-Runtime-*`` headers); ``error_document`` turns what
the bootstrap posted to ``…/error`` or ``init/error`` into the error document the invoke
endpoint answers. The custom worker (environment.py) calls both.
"""

from __future__ import annotations

import base64
import binascii
import json

from kubelambda_runtime.custom.exchange import Delivery
from kubelambda_runtime.wire.invocation import Invocation

# The error type of a posted error that is not a JSON object and names none in its header.
UNNAMED_ERROR = "Unhandled"


def delivery(invocation: Invocation, *, deadline_ms: int, function_arn: str) -> Delivery:
    """The Runtime API's answer to ``next`` for ``invocation``: its event (``{}`` for an empty
    body, as the invoke endpoint reads one) and the headers Lambda sends with it."""
    headers = [
        ("Lambda-Runtime-Deadline-Ms", str(deadline_ms)),
        ("Lambda-Runtime-Invoked-Function-Arn", invocation.arn or function_arn),
    ]
    if invocation.trace_id:
        headers.append(("Lambda-Runtime-Trace-Id", invocation.trace_id))
    client_context = _client_context(invocation.client_context)
    if client_context is not None:
        headers.append(("Lambda-Runtime-Client-Context", client_context))
    identity = _json_object(invocation.identity)
    if identity is not None:
        headers.append(("Lambda-Runtime-Cognito-Identity", identity))
    if invocation.tenant_id:
        headers.append(("Lambda-Runtime-Aws-Tenant-Id", invocation.tenant_id))
    headers.append(("Content-Type", "application/json"))
    body = invocation.body if invocation.body.strip() else b"{}"
    return Delivery(request_id=invocation.request_id, body=body, headers=tuple(headers))


def _client_context(encoded: str | None) -> str | None:
    """The invoke endpoint takes the client context in base64 (as boto3 sends it); the
    Runtime API gives it as JSON (aws-lambda-go and awslambdaric parse the header as JSON)."""
    if not encoded:
        return None
    try:
        decoded = base64.b64decode(encoded, validate=False).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return _json_object(decoded)


def _json_object(text: str | None) -> str | None:
    """``text`` again as compact ASCII JSON when it is a JSON object (so it fits a header
    whatever it held); None otherwise."""
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return json.dumps(value, separators=(",", ":")) if isinstance(value, dict) else None


def error_document(body: bytes, *, error_type: str) -> bytes:
    """The error document for a posted error: the body as posted when it is a JSON object (as
    Lambda passes it on: aws-lambda-go's {"errorMessage", "errorType"}, awslambdaric's with
    "stackTrace"); anything else becomes {"errorMessage": the text, "errorType": the
    Lambda-Runtime-Function-Error-Type header, else "Unhandled"}, so every caller still gets
    the shape of docs/contracts.md."""
    try:
        value = json.loads(body)
    except ValueError:
        value = None
    if isinstance(value, dict):
        return body
    document = {
        "errorMessage": body.decode("utf-8", "replace"),
        "errorType": error_type or UNNAMED_ERROR,
    }
    return json.dumps(document).encode()
