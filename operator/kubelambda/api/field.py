"""Field, one node of a CRD schema as the models hold it, and the builders of its plain kinds.

schema.py builds its tables from these; reader.py reads objects against the Fields in them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class Field:
    """One node of a CRD schema: the keywords the models enforce, in the CRD's own vocabulary.

    ``hint`` says in words what ``pattern`` means, for error messages; it is not in the CRD.
    ``default`` is a JSON-like value (tuples for arrays); None means no default.
    """

    type: str
    required: bool = False
    default: object = None
    minimum: int | None = None
    maximum: int | None = None
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None
    enum: tuple[str, ...] | None = None
    min_items: int | None = None
    max_items: int | None = None
    min_properties: int | None = None
    max_properties: int | None = None
    list_type: str | None = None
    list_map_keys: tuple[str, ...] | None = None
    # The CRD's format (date-time); the models check it themselves.
    format: str | None = None
    hint: str = ""

    def crd_keywords(self) -> dict[str, object]:
        """This field as the CRD writes it (camelCase keywords, lists for tuples)."""
        names = {
            "minimum": self.minimum,
            "maximum": self.maximum,
            "minLength": self.min_length,
            "maxLength": self.max_length,
            "pattern": self.pattern,
            "format": self.format,
            "enum": list(self.enum) if self.enum is not None else None,
            "minItems": self.min_items,
            "maxItems": self.max_items,
            "minProperties": self.min_properties,
            "maxProperties": self.max_properties,
            "x-kubernetes-list-type": self.list_type,
            "x-kubernetes-list-map-keys": (
                list(self.list_map_keys) if self.list_map_keys is not None else None
            ),
            "default": _json(self.default),
        }
        keywords: dict[str, object] = {"type": self.type, "required": self.required}
        keywords.update({k: v for k, v in names.items() if v is not None})
        return keywords


def _json(value: object) -> object:
    if isinstance(value, tuple):
        return [_json(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _json(v) for k, v in value.items()}
    return value


def string(
    *,
    required: bool = False,
    default: str | None = None,
    min_length: int | None = None,
    max_length: int | None = None,
    pattern: str | None = None,
    enum: tuple[str, ...] | None = None,
    hint: str = "",
) -> Field:
    """A string field; ``hint`` says in words what ``pattern`` means."""
    return Field(
        type="string",
        required=required,
        default=default,
        min_length=min_length,
        max_length=max_length,
        pattern=pattern,
        enum=enum,
        hint=hint,
    )


def integer(low: int, high: int, default: int | None = None) -> Field:
    """An integer field from ``low`` to ``high``, both included."""
    return Field(type="integer", minimum=low, maximum=high, default=default)


def object_(*, required: bool = False, default: object = None) -> Field:
    """An object field; its properties are rows of their own, named by path."""
    return Field(type="object", required=required, default=default)
