"""The context has every public attribute of awslambdaric's LambdaContext (lambda_context.py,
aws-lambda-python-runtime-interface-client 4.0.1), and its parts print as awslambdaric's do."""

from __future__ import annotations

import base64
import json

from kubelambda_runtime.worker.context import LambdaContext, parse_client_context, parse_identity

# awslambdaric's LambdaContext.__init__ and methods, ClientContext/Client/CognitoIdentity slots.
AWSLAMBDARIC_CONTEXT = {
    "aws_request_id",
    "log_group_name",
    "log_stream_name",
    "function_name",
    "memory_limit_in_mb",
    "function_version",
    "invoked_function_arn",
    "tenant_id",
    "client_context",
    "identity",
    "get_remaining_time_in_millis",
    "log",
}
AWSLAMBDARIC_CLIENT_CONTEXT = {"custom", "env", "client"}
AWSLAMBDARIC_CLIENT = {
    "installation_id",
    "app_title",
    "app_version_name",
    "app_version_code",
    "app_package_name",
}
AWSLAMBDARIC_IDENTITY = {"cognito_identity_id", "cognito_identity_pool_id"}


def _public(obj: object) -> set[str]:
    return {name for name in dir(obj) if not name.startswith("_")}


def _context() -> LambdaContext:
    fields = {"custom": {"k": "v"}, "env": {"e": "1"}, "client": {"app_title": "shop"}}
    return LambdaContext(
        function_name="fn",
        function_version="$LATEST",
        invoked_function_arn="arn:aws:lambda:us-east-1:000000000000:function:fn",
        memory_limit_in_mb=128,
        aws_request_id="r-1",
        log_group_name="/aws/lambda/fn",
        log_stream_name="s",
        deadline_ms=0,
        identity=parse_identity('{"cognitoIdentityId": "i", "cognitoIdentityPoolId": "p"}'),
        client_context=parse_client_context(base64.b64encode(json.dumps(fields).encode()).decode()),
        tenant_id="t",
    )


def test_every_public_attribute_of_awslambdarics_context_is_there():
    context = _context()
    assert _public(context) == AWSLAMBDARIC_CONTEXT
    assert context.client_context is not None and context.client_context.client is not None
    assert _public(context.client_context) == AWSLAMBDARIC_CLIENT_CONTEXT
    assert _public(context.client_context.client) == AWSLAMBDARIC_CLIENT
    assert _public(context.identity) == AWSLAMBDARIC_IDENTITY


def test_the_parts_print_as_awslambdarics_do():
    context = _context()
    assert (
        repr(context.identity)
        == "CognitoIdentity([cognito_identity_id=i,cognito_identity_pool_id=p])"
    )
    assert repr(context.client_context) == (
        "ClientContext([custom={'k': 'v'},env={'e': '1'},client=Client([installation_id=None,"
        "app_title=shop,app_version_name=None,app_version_code=None,app_package_name=None])])"
    )
