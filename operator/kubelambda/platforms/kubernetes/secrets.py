"""A Secret's values as text: what the components read from the Secrets users name (API keys,
credentials of event sources)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

__all__ = ["secret_text"]


def secret_text(secret: Mapping[str, Any]) -> dict[str, str]:
    """The Secret's `data`, decoded; a value that is not UTF-8 text is left out."""
    values = {}
    for key, value in (secret.get("data") or {}).items():
        try:
            values[str(key)] = base64.b64decode(str(value), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            continue  # not text: no key or credential can be read from it
    return values
