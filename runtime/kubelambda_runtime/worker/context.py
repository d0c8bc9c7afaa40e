"""The context object handed to ``handler(event, context)``, as Lambda's Python runtime builds it.

Built by the worker for every invocation, from the request's headers (request id,
deadline, ARN, client context, identity) and the function's settings.
"""

from __future__ import annotations

import json
import time
from typing import Any


class CognitoIdentity:
    """``context.identity``: set for calls from the AWS Mobile SDK; None attributes otherwise."""

    __slots__ = ("cognito_identity_id", "cognito_identity_pool_id")

    def __init__(self, *, identity_id: str | None = None, pool_id: str | None = None) -> None:
        self.cognito_identity_id = identity_id
        self.cognito_identity_pool_id = pool_id

    def __repr__(self) -> str:
        return (
            f"CognitoIdentity([cognito_identity_id={self.cognito_identity_id},"
            f"cognito_identity_pool_id={self.cognito_identity_pool_id}])"
        )


class Client:
    """``context.client_context.client``: the calling mobile app, as the caller described it."""

    __slots__ = (
        "app_package_name",
        "app_title",
        "app_version_code",
        "app_version_name",
        "installation_id",
    )

    def __init__(self, fields: dict[str, Any]) -> None:
        self.installation_id = fields.get("installation_id")
        self.app_title = fields.get("app_title")
        self.app_version_name = fields.get("app_version_name")
        self.app_version_code = fields.get("app_version_code")
        self.app_package_name = fields.get("app_package_name")

    def __repr__(self) -> str:
        # awslambdaric's lambda_context.py prints the parts this way; logs that print a
        # context read the same.
        return (
            f"Client([installation_id={self.installation_id},app_title={self.app_title},"
            f"app_version_name={self.app_version_name},"
            f"app_version_code={self.app_version_code},"
            f"app_package_name={self.app_package_name}])"
        )


class ClientContext:
    """``context.client_context``: what the caller sent in ``X-Amz-Client-Context``."""

    __slots__ = ("client", "custom", "env")

    def __init__(self, fields: dict[str, Any]) -> None:
        client = fields.get("client")
        self.client = Client(client) if isinstance(client, dict) else None
        self.custom = fields.get("custom")
        self.env = fields.get("env")

    def __repr__(self) -> str:
        return f"ClientContext([custom={self.custom},env={self.env},client={self.client}])"


def parse_client_context(encoded: str | None) -> ClientContext | None:
    """Decode the base64 JSON client context; None when absent or not a JSON object."""
    if not encoded:
        return None
    import base64  # here: only an invocation that carries a client context needs it

    try:
        fields = json.loads(base64.b64decode(encoded, validate=False))
    except ValueError:
        return None
    return ClientContext(fields) if isinstance(fields, dict) else None


def parse_identity(encoded: str | None) -> CognitoIdentity:
    """Decode the Cognito identity JSON; an identity with None attributes when absent."""
    fields: Any = None
    if encoded:
        try:
            fields = json.loads(encoded)
        except ValueError:
            fields = None
    if not isinstance(fields, dict):
        return CognitoIdentity()
    return CognitoIdentity(
        identity_id=fields.get("cognitoIdentityId"),
        pool_id=fields.get("cognitoIdentityPoolId"),
    )


class LambdaContext:
    """Every attribute and method of the context object of AWS Lambda's Python runtime."""

    def __init__(
        self,
        *,
        function_name: str,
        function_version: str,
        invoked_function_arn: str,
        memory_limit_in_mb: int,
        aws_request_id: str,
        log_group_name: str,
        log_stream_name: str,
        deadline_ms: int,
        identity: CognitoIdentity | None = None,
        client_context: ClientContext | None = None,
        tenant_id: str | None = None,
    ) -> None:
        self.function_name = function_name
        self.function_version = function_version
        self.invoked_function_arn = invoked_function_arn
        # Lambda gives the memory size as a string; code that does int(...) on it expects that.
        self.memory_limit_in_mb = str(memory_limit_in_mb)
        self.aws_request_id = aws_request_id
        self.log_group_name = log_group_name
        self.log_stream_name = log_stream_name
        self.identity = identity if identity is not None else CognitoIdentity()
        self.client_context = client_context
        self.tenant_id = tenant_id
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the invocation times out, never below zero."""
        return max(self._deadline_ms - int(time.time() * 1000), 0)

    def log(self, msg: str) -> None:
        """Write ``msg`` to the function's log, as ``context.log`` does on Lambda."""
        print(msg, end="" if msg.endswith("\n") else "\n", flush=True)  # noqa: T201

    def __repr__(self) -> str:
        return (
            f"LambdaContext([aws_request_id={self.aws_request_id},"
            f"log_group_name={self.log_group_name},log_stream_name={self.log_stream_name},"
            f"function_name={self.function_name},memory_limit_in_mb={self.memory_limit_in_mb},"
            f"function_version={self.function_version},"
            f"invoked_function_arn={self.invoked_function_arn},"
            f"client_context={self.client_context},identity={self.identity},"
            f"tenant_id={self.tenant_id}])"
        )
