"""Is a live object still what the controller applied? ``contains`` answers without a request.

The reconcilers compare each desired object with the watched copy and apply only on a
difference, so an idle reconcile makes no API calls. Fields the server adds are not drift.
A field the controller stops wanting (a file dropped from the code, a label) cannot be seen
that way, so every applied object carries a fingerprint of the whole intent (``fingerprinted``):
a new intent means a new fingerprint, and so an apply, which removes what was dropped.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any, Final

from kubelambda import jsonvalue

__all__ = ["APPLIED_ANNOTATION", "contains", "fingerprinted"]

APPLIED_ANNOTATION: Final = "kubelambda.dev/applied"


def fingerprinted(desired: Mapping[str, Any]) -> dict[str, Any]:
    """``desired`` annotated with the sha256 of everything else in it. Only the top level and
    metadata are copied: the rest is shared with ``desired``."""
    canonical = jsonvalue.canonical(desired)
    meta = dict(desired.get("metadata") or {})
    meta["annotations"] = {
        **(meta.get("annotations") or {}),
        APPLIED_ANNOTATION: hashlib.sha256(canonical).hexdigest()[:32],
    }
    return {**desired, "metadata": meta}


def contains(live: Any, desired: Any) -> bool:
    """True when every field of ``desired`` is in ``live`` with the same value.

    Lists must match element by element (order counts, as it does for env and containers).
    A desired empty or false value matches a missing field: the server omits those.
    """
    if isinstance(desired, Mapping):
        if not isinstance(live, Mapping):
            return False
        for key, value in desired.items():
            if key not in live:
                if value in (None, False, 0, "", [], {}):
                    continue
                return False
            if not contains(live[key], value):
                return False
        return True
    if isinstance(desired, list):
        return (
            isinstance(live, list)
            and len(live) == len(desired)
            and all(contains(have, want) for have, want in zip(live, desired, strict=True))
        )
    return bool(live == desired) and type(live) is type(desired)
