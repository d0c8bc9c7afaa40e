"""Reads a decoded manifest field by field against a table of schema.py, collecting every problem.

function.py and trigger.py drive it. Like the API server with a CRD, it fills in defaults
(a null counts as unset), then checks types, bounds, patterns and unknown fields.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cache
from typing import Final

from kubelambda.api.errors import Problem
from kubelambda.api.field import Field


class _Absent:
    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Final = _Absent()


@dataclass(frozen=True)
class Node:
    """A value in an object: ``path`` for messages (``spec.env[2]``), ``schema`` for lookups."""

    value: object
    path: str
    schema: str

    @property
    def present(self) -> bool:
        """True when the field is set, as CEL's ``has()`` sees it after defaulting."""
        return self.value is not ABSENT and self.value is not None

    def child(self, key: str) -> Node:
        value = self.value.get(key, ABSENT) if isinstance(self.value, Mapping) else ABSENT
        return Node(value, _join(self.path, key), _join(self.schema, key))


def _join(base: str, key: str) -> str:
    return f"{base}.{key}" if base else key


@cache
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def matches(pattern: str, value: str) -> bool:
    """Whether ``value`` matches a CRD pattern; every pattern of ours is anchored with ^...$."""
    return _regex(pattern).fullmatch(value) is not None


def describe(value: object) -> str:
    """The JSON type of a value, for messages that say what was found instead."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__


_EXPECTED = {
    "string": "a string",
    "integer": "an integer",
    "boolean": "true or false",
    "object": "an object",
    "array": "a list",
    "int-or-string": "an integer or a string",
}


class Reader:
    """Collects the problems of one object; its accessors never raise on bad input."""

    def __init__(self, fields: Mapping[str, Field]) -> None:
        self._fields = fields
        self._properties: dict[str, list[str]] = {}
        for path in fields:
            parent, _, name = path.rpartition(".")
            if not name.endswith(("[]", "{}")):
                self._properties.setdefault(parent, []).append(name)
        self.problems: list[Problem] = []

    def report(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message))

    def field(self, node: Node) -> Field:
        return self._fields[node.schema]

    def root(self, obj: object) -> Node | None:
        if not isinstance(obj, Mapping):
            self.report("", f"must be an object (a Kubernetes manifest), not {describe(obj)}")
            return None
        node = Node(obj, "", "")
        self._check_properties(node, obj)
        return node

    def obj(self, node: Node) -> Node | None:
        """The object at ``node`` (defaulted), or None when it is unset or not an object."""
        value = self._resolve(node)
        if value is ABSENT:
            return None
        if not isinstance(value, Mapping):
            self._wrong_type(node, value)
            return None
        node = replace(node, value=value)
        field = self.field(node)
        count = len(value)
        if field.min_properties is not None and count < field.min_properties:
            self.report(node.path, f"must have at least {field.min_properties} entries")
        if field.max_properties is not None and count > field.max_properties:
            self.report(
                node.path, f"must have at most {field.max_properties} entries (has {count})"
            )
        if f"{node.schema}{{}}" not in self._fields:
            self._check_properties(node, value)
        return node

    def entries(self, node: Node | None) -> list[tuple[str, Node]]:
        """The entries of a map-valued object returned by ``obj``."""
        if node is None or not isinstance(node.value, Mapping):
            return []
        result = []
        for key, value in node.value.items():
            if not isinstance(key, str):
                self.report(node.path, f"names must be strings, not {describe(key)}")
                continue
            result.append((key, Node(value, f"{node.path}[{key}]", f"{node.schema}{{}}")))
        return result

    def items(self, node: Node) -> list[Node]:
        """The items of the list at ``node`` (defaulted); duplicates refused per its list type."""
        value = self._resolve(node)
        if value is ABSENT:
            return []
        if not isinstance(value, list | tuple):
            self._wrong_type(node, value)
            return []
        field = self.field(node)
        if field.min_items is not None and len(value) < field.min_items:
            self.report(node.path, f"must have at least {field.min_items} items")
        if field.max_items is not None and len(value) > field.max_items:
            self.report(node.path, f"must have at most {field.max_items} items (has {len(value)})")
        items = [Node(v, f"{node.path}[{i}]", f"{node.schema}[]") for i, v in enumerate(value)]
        if field.list_type == "set":
            self._check_unique(items, lambda item: item.value, "duplicate of")
        elif field.list_type == "map" and field.list_map_keys:
            keys = field.list_map_keys
            self._check_unique(
                items,
                lambda item: tuple(item.child(k).value for k in keys),
                "duplicate entry: same " + ", ".join(keys) + " as",
            )
        return items

    def text(self, node: Node) -> str:
        """A required or defaulted string ("" when it is missing or wrong, already reported)."""
        value = self.optional_text(node)
        return value if value is not None else ""

    def optional_text(self, node: Node) -> str | None:
        value = self._resolve(node)
        if value is ABSENT:
            return None
        if not isinstance(value, str):
            self._wrong_type(node, value)
            return None
        field = self.field(node)
        if field.min_length is not None and len(value) < field.min_length:
            if field.min_length == 1:
                self.report(node.path, "must not be empty")
            else:
                self.report(node.path, f"must be at least {field.min_length} characters long")
        if field.max_length is not None and len(value) > field.max_length:
            self.report(
                node.path,
                f"must be at most {field.max_length} characters long (is {len(value)})",
            )
        if field.enum is not None and value not in field.enum:
            self.report(node.path, f"must be one of {', '.join(field.enum)}, not {value!r}")
        if field.pattern is not None and not matches(field.pattern, value):
            wanted = field.hint or f"match {field.pattern}"
            self.report(node.path, f"must be {wanted}, not {value!r}")
        return value

    def integer(self, node: Node) -> int:
        """A required or defaulted integer (0 when it is missing or wrong, already reported)."""
        value = self.optional_integer(node)
        return value if value is not None else 0

    def optional_integer(self, node: Node) -> int | None:
        value = self._resolve(node)
        if value is ABSENT:
            return None
        # JSON has one number type: 3.0 is the integer 3, as the API server reads it.
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            self._wrong_type(node, value)
            return None
        field = self.field(node)
        if field.minimum is not None and value < field.minimum:
            self.report(node.path, f"must be at least {field.minimum}, not {value}")
        if field.maximum is not None and value > field.maximum:
            self.report(node.path, f"must be at most {field.maximum}, not {value}")
        return value

    def optional_boolean(self, node: Node) -> bool | None:
        value = self._resolve(node)
        if value is ABSENT:
            return None
        if not isinstance(value, bool):
            self._wrong_type(node, value)
            return None
        return value

    def int_or_string(self, node: Node) -> int | str | None:
        value = self._resolve(node)
        if value is ABSENT:
            return None
        if isinstance(value, bool) or not isinstance(value, int | str):
            self._wrong_type(node, value)
            return None
        return value

    def _resolve(self, node: Node) -> object:
        field = self.field(node)
        value = node.value
        if value is None:
            value = ABSENT
        if value is ABSENT and field.default is not None:
            value = _thaw(field.default)
        if value is ABSENT and field.required:
            self.report(node.path, "is required")
        return value

    def _wrong_type(self, node: Node, value: object) -> None:
        expected = _EXPECTED[self.field(node).type]
        self.report(node.path, f"must be {expected}, not {describe(value)}")

    def _check_properties(self, node: Node, value: Mapping[object, object]) -> None:
        known = self._properties.get(node.schema)
        if not known:
            return  # an object the models do not look into (metadata, status)
        for key in value:
            if key in known:
                continue
            name = str(key)
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"did you mean {close[0]}?" if close else f"known fields: {', '.join(known)}"
            self.report(_join(node.path, name), f"unknown field ({hint})")

    def _check_unique(
        self, items: Sequence[Node], key: Callable[[Node], object], message: str
    ) -> None:
        seen: dict[object, str] = {}
        for item in items:
            try:
                identity = key(item)
                hash(identity)
            except TypeError:
                continue  # an object where a scalar belongs: its type problem is reported apart
            if identity in seen:
                self.report(item.path, f"{message} {seen[identity]}")
            else:
                seen[identity] = item.path


def _thaw(value: object) -> object:
    """A mutable copy of a default, so that no two objects share one."""
    if isinstance(value, tuple | list):
        return [_thaw(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    return value
