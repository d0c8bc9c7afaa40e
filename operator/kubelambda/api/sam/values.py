"""The markers resolved template values may hold: ``Unresolved`` (with why) and ``NO_VALUE``.

intrinsics.py and resources.py make them; the mappers look for them with ``find_unresolved``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True)
class Unresolved:
    """A value only CloudFormation could compute, or that the converter does not: ``reason``."""

    reason: str


class _NoValue:
    def __repr__(self) -> str:
        return "AWS::NoValue"


# Ref AWS::NoValue: the property is left out, as CloudFormation leaves it out.
NO_VALUE: Final = _NoValue()


def find_unresolved(value: object) -> Unresolved | None:
    """The first Unresolved marker anywhere in ``value``, or None when it is all plain."""
    if isinstance(value, Unresolved):
        return value
    if isinstance(value, Mapping):
        value = list(value.values())
    if isinstance(value, list):
        for item in value:
            found = find_unresolved(item)
            if found is not None:
                return found
    return None
