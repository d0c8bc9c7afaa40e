"""The runtime answers as AWS's own Python runtime client (awslambdaric) behind the Runtime
Interface Emulator does: return values, the response size limit, exits (issue 13)."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(
    ("returned", "body"),
    [
        ("collections.namedtuple('P', 'x y')(1, 2)", b'{"x": 1, "y": 2}'),
        ("{'price': decimal.Decimal('19.90')}", b'{"price": 19.90}'),
        ("decimal.Decimal('0.1000000000000000000000001')", b"0.1000000000000000000000001"),
        ("b'\\x89PNG raw'", b"\x89PNG raw"),
        ("{'data': b'text'}", b'{"data": "text"}'),
    ],
    ids=["namedtuple", "decimal-digits", "decimal-precision", "bytes", "nested-bytes"],
)
def test_return_values_are_encoded_as_awslambdaric_does(runtime, returned, body):
    code = f"import collections, decimal\ndef handler(event, context):\n    return {returned}\n"
    fn = runtime({"app.py": code})
    answer = fn.invoke("{}")
    assert answer.status_code == 200
    assert "x-amz-function-error" not in answer.headers
    assert answer.content == body


# Lambda's limit is 6291556 bytes (6 MiB + 100): a body of exactly that size is answered.
SIZED = """
def handler(event, context):
    return "a" * (event["size"] - 2)  # the JSON string's two quotes
"""


def test_a_response_at_the_limit_is_answered(runtime):
    fn = runtime({"app.py": SIZED})
    answer = fn.invoke('{"size": 6291556}')
    assert "x-amz-function-error" not in answer.headers
    assert len(answer.content) == 6291556


def test_a_response_over_the_limit_is_lambdas_error(runtime):
    fn = runtime({"app.py": SIZED})
    answer = fn.invoke('{"size": 6291557}')
    assert answer.status_code == 200
    assert answer.headers["x-amz-function-error"] == "Unhandled"
    assert answer.json() == {
        "errorMessage": (
            "Response payload size exceeded maximum allowed payload size (6291556 bytes)."
        ),
        "errorType": "Function.ResponseSizeTooLarge",
    }
    assert fn.invoke('{"size": 2}').json() == ""  # and it keeps serving


@pytest.mark.parametrize("statement", ["sys.exit(0)", "sys.exit()", "os._exit(0)"])
def test_an_exit_with_status_0_is_an_exit_error_without_a_reason(runtime, statement):
    # The emulator (internal/lambda/rapid/handlers.go): a runtime that exits successfully
    # "exited without providing a reason"; any other exit "exited with error: <status>".
    fn = runtime({"app.py": f"import os, sys\ndef handler(event, context):\n    {statement}\n"})
    answer = fn.invoke("{}", **{"Lambda-Runtime-Aws-Request-Id": "exit-0"})
    assert answer.status_code == 200
    assert answer.headers["x-amz-function-error"] == "Unhandled"
    error = answer.json()
    assert error["errorType"] == "Runtime.ExitError"
    assert (
        error["errorMessage"]
        == "RequestId: exit-0 Error: Runtime exited without providing a reason"
    )
    assert "RequestId: exit-0 Error: Runtime exited without providing a reason" in fn.logs()


CONTEXT = """
import os

def handler(event, context):
    identity, client_context = context.identity, context.client_context
    return {
        "request_id": context.aws_request_id,
        "trace": os.environ.get("_X_AMZN_TRACE_ID"),
        "tenant": context.tenant_id,
        "identity": [identity.cognito_identity_id, identity.cognito_identity_pool_id],
        "custom": client_context.custom if client_context else None,
        "app": client_context.client.app_title if client_context else None,
    }
"""


def test_the_emulators_invoke_headers_are_taken(runtime):
    import base64
    import json

    fn = runtime({"app.py": CONTEXT})
    client_context = {"custom": {"k": "v"}, "client": {"app_title": "shop"}, "env": {}}
    answer = fn.invoke(
        "{}",
        **{
            "X-Amzn-RequestId": "rie-1",
            "X-Amzn-Trace-Id": "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1",
            "X-Amz-Client-Context": base64.b64encode(json.dumps(client_context).encode()).decode(),
            "X-Amz-Cognito-Identity": json.dumps(
                {"cognitoIdentityId": "id-1", "cognitoIdentityPoolId": "pool-1"}
            ),
            "X-Amz-Tenant-Id": "tenant-a",
        },
    )
    assert answer.headers["lambda-runtime-aws-request-id"] == "rie-1"
    assert answer.json() == {
        "request_id": "rie-1",
        "trace": "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1",
        "tenant": "tenant-a",
        "identity": ["id-1", "pool-1"],
        "custom": {"k": "v"},
        "app": "shop",
    }
    # The trace id is the invocation's: the next one without a trace header has none.
    assert fn.invoke("{}").json()["trace"] is None
