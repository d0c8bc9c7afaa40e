"""Who may call the Lambda Invoke API, as AWS decides it: a request signed (SigV4) with an
access key whose grants cover the function; a Function that opts in takes anyone.

The Invoke API calls `authorise` for every invocation; the keys come from an `AccessKeys`
(the Kubernetes platform's Secrets on a cluster, `StaticAccessKeys` in tests).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from kubelambda.api.identity import FunctionKey
from kubelambda.gateway import sigv4
from kubelambda.gateway.exceptions import AccessDenied
from kubelambda.gateway.http import Request

__all__ = ["AccessKey", "AccessKeys", "StaticAccessKeys", "authenticate", "authorise"]


@dataclass(frozen=True, slots=True)
class AccessKey:
    """One access key: its secret, the functions it may invoke (`NAMESPACE/NAME` patterns,
    `*` matching any part), and where it was defined, for messages."""

    id: str
    secret: str
    grants: tuple[str, ...]
    source: str = ""

    def allows(self, function: FunctionKey) -> bool:
        name = f"{function.namespace}/{function.name}"
        return any(fnmatch.fnmatchcase(name, grant) for grant in self.grants)


class AccessKeys(Protocol):
    def __call__(self, access_key_id: str) -> AccessKey | None:
        """The key with this id, or None when there is none."""
        ...


class StaticAccessKeys:
    """A fixed set of keys."""

    def __init__(self, keys: Iterable[AccessKey] = ()) -> None:
        self._keys: Mapping[str, AccessKey] = {key.id: key for key in keys}

    def __call__(self, access_key_id: str) -> AccessKey | None:
        return self._keys.get(access_key_id)


def authenticate(request: Request, keys: AccessKeys, *, now: float) -> AccessKey:
    """The key that signed `request`; AccessDenied (403, AWS's error type) when none did."""
    try:
        credential = sigv4.parse(request.header(b"authorization"))
        key = keys(credential.access_key)
        if key is None:
            raise AccessDenied(
                "The security token included in the request is invalid.",
                error_type="UnrecognizedClientException",
            )
        sigv4.verify(
            credential,
            secret=key.secret,
            method=request.method,
            raw_path=request.raw_path,
            query=request.query.decode("latin-1"),
            headers=request.headers,
            body=request.body,
            now=now,
        )
    except sigv4.SignatureError as exc:
        raise AccessDenied(exc.message, error_type=exc.error_type) from None
    return key


def authorise(key: AccessKey, function: FunctionKey, *, arn: str) -> None:
    """AccessDenied unless `key` may invoke `function` (whose ARN names it in the message)."""
    if not key.allows(function):
        raise AccessDenied(
            f"User: {key.id} is not authorized to perform: lambda:InvokeFunction on resource: "
            f"{arn} because no identity-based policy allows the lambda:InvokeFunction action",
            error_type="AccessDeniedException",
        )
