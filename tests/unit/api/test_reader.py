"""Reader: how raw values meet a schema table — types, bounds, defaults, unknown fields."""

from __future__ import annotations

from types import MappingProxyType

import pytest

from kubelambda.api.field import Field
from kubelambda.api.reader import Node, Reader

TABLE = MappingProxyType(
    {
        "count": Field(type="integer", minimum=1, maximum=5, default=2),
        "name": Field(
            type="string", required=True, max_length=4, pattern="^[a-z]+$", hint="lowercase"
        ),
        "tags": Field(type="array", max_items=2, list_type="set"),
        "tags[]": Field(type="string", enum=("a", "b")),
        "labels": Field(type="object", max_properties=1),
        "labels{}": Field(type="string"),
    }
)


def read(obj: dict[str, object]) -> tuple[Reader, Node]:
    reader = Reader(TABLE)
    root = reader.root(obj)
    assert root is not None
    return reader, root


@pytest.mark.parametrize(
    ("value", "expected", "message"),
    [
        (3, 3, None),
        (3.0, 3, None),
        (None, 2, None),
        (True, 0, "must be an integer, not the boolean true"),
        ("3", 0, "must be an integer, not the string '3'"),
        (0, 0, "must be at least 1, not 0"),
        (6, 6, "must be at most 5, not 6"),
    ],
)
def test_integer(value: object, expected: int, message: str | None) -> None:
    reader, root = read({"count": value, "name": "ab"})
    assert reader.integer(root.child("count")) == expected
    assert [p.message for p in reader.problems] == ([message] if message else [])


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("abcde", "must be at most 4 characters long (is 5)"),
        ("AB", "must be lowercase, not 'AB'"),
        (None, "is required"),
        (["x"], "must be a string, not a list"),
    ],
)
def test_text(value: object, message: str) -> None:
    reader, root = read({"name": value})
    reader.text(root.child("name"))
    assert [(p.path, p.message) for p in reader.problems] == [("name", message)]


def test_set_refuses_duplicates_and_bad_items() -> None:
    reader, root = read({"name": "ab", "tags": ["a", "a", "c"]})
    values = [reader.text(item) for item in reader.items(root.child("tags"))]
    assert values == ["a", "a", "c"]
    assert [str(p) for p in reader.problems] == [
        "tags: must have at most 2 items (has 3)",
        "tags[1]: duplicate of tags[0]",
        "tags[2]: must be one of a, b, not 'c'",
    ]


def test_map_entries_and_their_count() -> None:
    reader, root = read({"name": "ab", "labels": {"x": "1", "y": 2}})
    entries = reader.entries(reader.obj(root.child("labels")))
    assert [(key, reader.optional_text(node)) for key, node in entries] == [("x", "1"), ("y", None)]
    assert [str(p) for p in reader.problems] == [
        "labels: must have at most 1 entries (has 2)",
        "labels[y]: must be a string, not the number 2",
    ]


def test_unknown_fields_are_listed_or_guessed() -> None:
    reader, _ = read({"name": "ab", "cuont": 1, "zzz": 1})
    assert [str(p) for p in reader.problems] == [
        "cuont: unknown field (did you mean count?)",
        "zzz: unknown field (known fields: count, name, tags, labels)",
    ]


def test_defaults_are_fresh_copies() -> None:
    table = {"list": Field(type="array", default=("a",)), "list[]": Field(type="string")}
    reader = Reader(table)
    root = reader.root({})
    assert root is not None
    first = reader.items(root.child("list"))
    assert [n.value for n in first] == ["a"]
    assert isinstance(reader.field(root.child("list")).default, tuple)
