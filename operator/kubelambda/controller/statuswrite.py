"""The smallest merge patch that turns one status into another, or {} when they are equal.

Both reconcilers write status through it, so an unchanged status costs no request.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

__all__ = ["status_patch"]


def status_patch(
    old: Mapping[str, Any], new: Mapping[str, Any], *, owned: Collection[str]
) -> dict[str, Any]:
    """Top-level keys of ``new`` that differ from ``old``, and None for the ``owned`` keys that
    ``new`` dropped; keys other writers own (the autoscaler's) are left alone. Lists
    (conditions) are replaced whole, as a merge patch does."""
    patch: dict[str, Any] = {key: value for key, value in new.items() if old.get(key) != value}
    patch.update({key: None for key in owned if key in old and key not in new})
    return patch
