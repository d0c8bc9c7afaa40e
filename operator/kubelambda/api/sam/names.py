"""Kubernetes names for things SAM names its own way: a Lambda function name (CamelCase, '_')
becomes a DNS label, an ARN gives up its resource's name, and each name is made unique.

The converter's mappers call these; none of them can fail.
"""

from __future__ import annotations

import re
from typing import Final

_WORD_BREAK: Final = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_NOT_LABEL: Final = re.compile(r"[^a-z0-9]+")
# Secrets Manager ends every secret's ARN with '-' and six random letters and digits; six
# lowercase letters are more likely a word of the name (prod-orders) than random (1 in 200).
_SECRET_SUFFIX: Final = re.compile(r"-(?![a-z]{6}$)[A-Za-z0-9]{6}$")
DNS_LABEL_MAX: Final = 63
DNS_NAME_MAX: Final = 253


def dns_label(name: str, *, limit: int = DNS_LABEL_MAX) -> str:
    """``OrderHandler`` → ``order-handler``, ``HTTPApi_v2`` → ``http-api-v2``: lowercase words
    joined by '-', starting with a letter (``fn-`` is put before a leading digit), at most
    ``limit`` characters."""
    words = _WORD_BREAK.sub("-", name).lower()
    label = _NOT_LABEL.sub("-", words).strip("-") or "fn"
    if not label[0].isalpha():
        label = f"fn-{label}"
    return label[:limit].rstrip("-")


def arn_resource(arn: str) -> str:
    """The resource name at the end of an ARN (arn:aws:sqs:REGION:ACCOUNT:NAME → NAME); a value
    that is not an ARN is returned as it is."""
    if not arn.startswith("arn:"):
        return arn
    parts = arn.split(":", 6)
    if len(parts) < 6:
        return arn
    tail = parts[-1]
    if parts[2] == "lambda":
        return tail.split(":", 1)[0]  # function:NAME[:QUALIFIER] split as resource type:name
    return tail.rsplit("/", 1)[-1]


def arn_service(arn: str) -> str:
    """The service of an ARN (``sqs``, ``lambda``), or "" when it is not one."""
    parts = arn.split(":")
    return parts[2] if arn.startswith("arn:") and len(parts) > 2 else ""


def secret_name(arn: str) -> str:
    """A Kubernetes Secret name for a Secrets Manager secret: its name without the random
    suffix, in lowercase words joined by '-' (…:secret:shop/KafkaUser-AbC123 → shop-kafka-user)."""
    name = arn.split(":secret:", 1)[1] if ":secret:" in arn else arn
    name = _WORD_BREAK.sub("-", _SECRET_SUFFIX.sub("", name))
    cleaned = re.sub(r"[^a-z0-9.]+", "-", name.lower()).strip("-.")
    return (cleaned or "secret")[:DNS_NAME_MAX]


class NameBook:
    """Hands out names that are unique among those given so far: a second ``orders`` becomes
    ``orders-2``, kept within ``limit`` characters."""

    def __init__(self, *, limit: int = DNS_LABEL_MAX) -> None:
        self._taken: set[str] = set()
        self._limit = limit

    def take(self, wanted: str) -> str:
        name, number = wanted, 1
        while name in self._taken:
            number += 1
            suffix = f"-{number}"
            name = wanted[: self._limit - len(suffix)].rstrip("-") + suffix
        self._taken.add(name)
        return name
