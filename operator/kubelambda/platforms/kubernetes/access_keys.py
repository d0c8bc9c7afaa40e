"""Invoke API access keys kept as Secrets: each Secret labelled `kubelambda.dev/access-key` in
the gateway's namespace holds one key (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`) and the
functions it may invoke (`functions`: `NAMESPACE/NAME` patterns, one per line or comma).

``kubelambda gateway`` feeds `SecretAccessKeys` from a watch of those Secrets and gives it to
the gateway as its `AccessKeys`. A Secret missing a part is left out, with a warning.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Mapping
from typing import Any, Final

from kubelambda.gateway.access import AccessKey

__all__ = ["ACCESS_KEY_LABEL", "SecretAccessKeys", "access_key_of"]

logger = logging.getLogger(__name__)

ACCESS_KEY_LABEL: Final = "kubelambda.dev/access-key"


def _field(data: Mapping[str, Any], name: str) -> str | None:
    value = data.get(name)
    if not isinstance(value, str):
        return None
    try:
        return base64.b64decode(value, validate=True).decode("utf-8").strip()
    except (binascii.Error, UnicodeDecodeError):
        return None


def access_key_of(secret: Mapping[str, Any]) -> AccessKey | None:
    """The key a Secret holds, or None (logged) when it is incomplete."""
    meta = secret.get("metadata") or {}
    where = f"Secret {meta.get('namespace')}/{meta.get('name')}"
    data = secret.get("data") or {}
    key_id = _field(data, "AWS_ACCESS_KEY_ID")
    key_secret = _field(data, "AWS_SECRET_ACCESS_KEY")
    functions = _field(data, "functions") or ""
    grants = tuple(g.strip() for g in functions.replace(",", "\n").splitlines() if g.strip())
    if not key_id or not key_secret:
        logger.warning("%s: needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; ignored", where)
        return None
    if not grants:
        logger.warning(
            "%s: its key %s may invoke nothing until 'functions' names some", where, key_id
        )
    return AccessKey(id=key_id, secret=key_secret, grants=grants, source=where)


class SecretAccessKeys:
    """The keys of the watched Secrets, by access key id."""

    def __init__(self) -> None:
        self._by_secret: dict[tuple[str, str], AccessKey] = {}
        self._by_id: dict[str, AccessKey] = {}

    def __call__(self, access_key_id: str) -> AccessKey | None:
        return self._by_id.get(access_key_id)

    def secret_event(self, event_type: str, secret: Mapping[str, Any]) -> None:
        meta = secret.get("metadata") or {}
        name = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        key = None if event_type == "DELETED" else access_key_of(secret)
        if key is None:
            self._by_secret.pop(name, None)
        else:
            self._by_secret[name] = key
        self._by_id = {k.id: k for k in self._by_secret.values()}
