"""Calls the Lambda Invoke API for ``kubelambda invoke``: boto3's Lambda client pointed at a
gateway (local mode's or a cluster's), signed with SigV4 when the environment holds AWS
credentials, unsigned otherwise (local mode takes unsigned calls)."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Final

import boto3
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

if TYPE_CHECKING:
    from mypy_boto3_lambda import LambdaClient

__all__ = [
    "InvokeError",
    "Outcome",
    "function_name",
    "invoke",
    "lambda_client",
    "read_payload",
    "region_of",
]

DEFAULT_REGION: Final = "us-east-1"
# Past Lambda's longest timeout (900 s), so the client never gives up on a running function.
READ_TIMEOUT_SECONDS: Final = 910


class InvokeError(Exception):
    """The call did not reach the function: the gateway refused it or could not be reached.
    The message names the problem (AWS's error code first, when there is one)."""


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """What the Invoke API answered: 200 with the function's result (or its error, with
    ``function_error`` set, as Lambda's X-Amz-Function-Error), or 202 for an Event."""

    status: int
    request_id: str
    payload: bytes
    function_error: str | None = None
    log_tail: str | None = None  # the invocation's last 4 KB of log, when asked


def read_payload(value: str, *, stdin: BinaryIO) -> bytes:
    """``--payload``: JSON text, ``@FILE`` or ``@-`` (standard input). ValueError naming the
    problem when it cannot be read or is not JSON (Lambda takes JSON payloads only)."""
    if value.startswith("@"):
        source = value[1:]
        try:
            data = stdin.read() if source == "-" else Path(source).read_bytes()
        except OSError as exc:
            raise ValueError(f"--payload {value}: cannot read {source}: {exc.strerror}") from None
    else:
        data = value.encode("utf-8")
    try:
        json.loads(data)
    except ValueError as exc:
        raise ValueError(f"--payload {value[:60]!r} is not JSON: {exc}") from None
    return data


def function_name(name: str, namespace: str | None) -> str:
    """The FunctionName the Invoke API resolves: NAME, NAMESPACE.NAME or an ARN as given, or
    NAMESPACE.NAME for ``namespace``."""
    if namespace is None:
        return name
    if "." in name or name.startswith("arn:"):
        raise ValueError(f"--namespace goes with a plain NAME, not {name!r}")
    return f"{namespace}.{name}"


def region_of(given: str | None, environ: Mapping[str, str]) -> str:
    """The region to sign for: ``--region``, else AWS_REGION, AWS_DEFAULT_REGION, us-east-1."""
    return given or environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION


def lambda_client(
    url: str, *, region: str, environ: Mapping[str, str], max_attempts: int = 3
) -> LambdaClient:
    """boto3's Lambda client for the gateway at ``url``. It signs with AWS_ACCESS_KEY_ID and
    AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN), or AWS_PROFILE's credentials; with neither,
    it sends unsigned requests, never looking further (no instance metadata service)."""
    config = Config(
        retries={"mode": "standard", "max_attempts": max_attempts},
        connect_timeout=5,
        read_timeout=READ_TIMEOUT_SECONDS,
    )
    key, secret = environ.get("AWS_ACCESS_KEY_ID"), environ.get("AWS_SECRET_ACCESS_KEY")
    if key and secret:
        session = boto3.session.Session(
            aws_access_key_id=key,
            aws_secret_access_key=secret,
            aws_session_token=environ.get("AWS_SESSION_TOKEN") or None,
        )
    elif environ.get("AWS_PROFILE"):
        session = boto3.session.Session(profile_name=environ["AWS_PROFILE"])
    else:
        session = boto3.session.Session()
        config = config.merge(Config(signature_version=UNSIGNED))
    return session.client("lambda", endpoint_url=url, region_name=region, config=config)


def invoke(
    client: LambdaClient,
    *,
    name: str,
    payload: bytes,
    asynchronous: bool = False,
    log_tail: bool = False,
) -> Outcome:
    """Invoke ``name`` (RequestResponse, or Event when ``asynchronous``); InvokeError when the
    gateway does not run it."""
    endpoint = client.meta.endpoint_url
    try:
        response: Any = client.invoke(
            FunctionName=name,
            InvocationType="Event" if asynchronous else "RequestResponse",
            LogType="Tail" if log_tail and not asynchronous else "None",
            Payload=payload,
        )
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = error.get("Code") or "Error"
        raise InvokeError(f"{code}: {error.get('Message') or exc}") from None
    except EndpointConnectionError:
        raise InvokeError(
            f"cannot reach a gateway at {endpoint}: is `kubelambda local` running, or is --url"
            " (or $KUBELAMBDA_URL) the gateway's address?"
        ) from None
    except BotoCoreError as exc:
        raise InvokeError(f"calling {endpoint}: {exc}") from None
    tail = response.get("LogResult")
    return Outcome(
        status=response["StatusCode"],
        request_id=response["ResponseMetadata"].get("RequestId", ""),
        payload=response["Payload"].read() if "Payload" in response else b"",
        function_error=response.get("FunctionError"),
        log_tail=base64.b64decode(tail).decode("utf-8", "replace") if tail else None,
    )
