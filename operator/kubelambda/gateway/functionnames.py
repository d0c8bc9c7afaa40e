"""Invoke API FunctionNames: NAME, NAMESPACE.NAME, either with `:$LATEST`, and the same inside
a full or partial ARN, as docs/contracts.md defines. The routing table (routing.py) and the
management API (sources/management.py) read them here.
"""

from __future__ import annotations

import re

from kubelambda.api.identity import FunctionKey
from kubelambda.gateway.exceptions import FunctionNotFound, InvalidParameter

__all__ = ["LATEST", "parse_function_name", "split_function_name"]

LATEST = "$LATEST"
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
# Full ARN, or the partial form ACCOUNT:function:NAME that Lambda also accepts.
_ARN = re.compile(r"^(?:arn:aws[a-z-]*:lambda:[a-z0-9-]*:)?(\d{12}):function:(.+)$")


def split_function_name(
    function_name: str, qualifier: str | None
) -> tuple[str | None, str, str | None]:
    """(namespace or None, name, qualifier) of a FunctionName, its ARN and `:QUALIFIER` taken
    off; raises InvalidParameter when they are malformed or disagree with `qualifier`."""
    name = function_name
    arn = _ARN.match(name)
    if arn is not None:
        name = arn.group(2)
    base, colon, suffix = name.partition(":")
    if colon:
        if ":" in suffix or not suffix:
            raise InvalidParameter(
                f"FunctionName {function_name!r} is not a valid function name or ARN",
                error_type="ValidationException",
            )
        if qualifier is not None and qualifier != suffix:
            raise InvalidParameter(
                f"The derived qualifier from the function name ({suffix}) does not match "
                f"the specified qualifier ({qualifier})",
                error_type="ValidationException",
            )
        qualifier = suffix
    namespace, dot, short = base.partition(".")
    return (namespace, short, qualifier) if dot else (None, base, qualifier)


def parse_function_name(
    function_name: str, *, qualifier: str | None, default_namespace: str
) -> FunctionKey:
    """Resolve an Invoke API FunctionName to a Function key, as docs/contracts.md defines.

    Accepts NAME, NAMESPACE.NAME, either with a `:$LATEST` suffix, and the same inside a
    full or partial ARN. Raises InvalidParameter for names that cannot be Functions and
    FunctionNotFound for any qualifier but $LATEST (there are no versions or aliases).
    """
    found, short, qualifier = split_function_name(function_name, qualifier)
    namespace = found if found is not None else default_namespace
    for label, what in ((short, "name"), (namespace, "namespace")):
        if not _DNS_LABEL.match(label):
            raise InvalidParameter(
                f"FunctionName {function_name!r}: {what} {label!r} is not a DNS label "
                "(lower-case letters, digits and '-', at most 63 characters); "
                "use NAME, NAMESPACE.NAME or an ARN of either",
                error_type="ValidationException",
            )
    key = FunctionKey(namespace, short)
    if qualifier is not None and qualifier != LATEST:
        raise FunctionNotFound(
            f"Function not found: {key} with qualifier {qualifier!r} (only $LATEST exists)"
        )
    return key
