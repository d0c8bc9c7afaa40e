"""A Function's identity, the one every component keys its tables by: `FunctionKey`
(namespace, name), and the ARN a function is invoked as.

The gateway, the autoscaler, the delivery queue and both platforms use these; nothing
else names a function.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["FunctionKey", "function_arn"]


class FunctionKey(NamedTuple):
    """A Function's identity: its namespace and name.

    A named tuple rather than a dataclass: it keys several dicts per request, and a
    tuple's hash is computed in C.
    """

    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


def function_arn(key: FunctionKey, *, region: str, account_id: str, default_namespace: str) -> str:
    """The ARN a function is invoked as: NAME in the default namespace, else NAMESPACE.NAME."""
    name = key.name if key.namespace == default_namespace else f"{key.namespace}.{key.name}"
    return f"arn:aws:lambda:{region}:{account_id}:function:{name}"
