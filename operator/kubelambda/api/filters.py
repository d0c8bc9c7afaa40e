"""Lambda's event filtering: the `filterCriteria` patterns of a queue or kafka Trigger, checked as
Lambda checks them (`parse_filter`) and matched against the filter document the dispatcher makes
of each record (`kubelambda.dispatcher.shapes`); a record no pattern matches is never delivered.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, NoReturn

__all__ = [
    "DEFAULT_MAXIMUM_FILTERS",
    "MAXIMUM_PATTERN_LENGTH",
    "FilterError",
    "FilterPattern",
    "JsonNumber",
    "load_json",
    "matches_any",
    "parse_filter",
    "parse_filters",
]

MAXIMUM_PATTERN_LENGTH: Final = 4096  # Lambda's limit on one Filter.Pattern
DEFAULT_MAXIMUM_FILTERS: Final = 5  # Lambda's default quota per mapping (10 on request)
# Not a Lambda limit: a bound on nesting so that a pattern costs a bounded amount to check.
MAXIMUM_NESTING: Final = 32
OPERATORS: Final = ("prefix", "suffix", "equals-ignore-case", "anything-but", "numeric", "exists")

_MISSING: Final = object()  # a field the document does not have


class FilterError(ValueError):
    """A pattern Lambda would refuse; the message names the filter, the field and the problem."""


class JsonNumber(float):
    """A number read from JSON that keeps the text it was written as: Lambda compares exact values
    by their text (300, 300.0 and 3.0e2 differ) and numeric ranges by value."""

    __slots__ = ("text",)
    text: str

    def __new__(cls, text: str) -> JsonNumber:
        number = super().__new__(cls, text)
        number.text = text
        return number


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def load_json(text: str | bytes) -> Any:
    """JSON as the filters read it: numbers become `JsonNumber`; NaN and Infinity, which strict
    JSON does not have, and nesting deeper than Python's stack are refused with ValueError."""
    try:
        return json.loads(
            text, parse_int=JsonNumber, parse_float=JsonNumber, parse_constant=_refuse_constant
        )
    except RecursionError:
        raise ValueError("nested too deeply") from None


def _number_text(value: Any) -> str | None:
    """How a document number reads in JSON; None for anything that is not a JSON number."""
    if isinstance(value, JsonNumber):
        return value.text
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return json.dumps(value)
    return None


def _show(value: Any) -> str:
    """A pattern value in an error message, numbers as they were written."""
    if isinstance(value, JsonNumber):
        return value.text
    if isinstance(value, list):
        return "[" + ", ".join(_show(item) for item in value) + "]"
    return json.dumps(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# A rule gets the leaf values found at its field (empty when the field is missing).
Rule = Callable[[Sequence[Any]], bool]


@dataclass(frozen=True)
class _Fields:
    """A pattern object: every named field must match (AND), and for each `$or` one of its
    alternatives must match."""

    nested: tuple[tuple[str, _Fields], ...]
    leaves: tuple[tuple[str, tuple[Rule, ...]], ...]
    alternatives: tuple[tuple[_Fields, ...], ...]


def _elements(value: list[Any]) -> list[Any]:
    """The non-list items of a (possibly nested) JSON array, without recursion."""
    found: list[Any] = []
    stack = [iter(value)]
    while stack:
        item = next(stack[-1], _MISSING)
        if item is _MISSING:
            stack.pop()
        elif isinstance(item, list):
            stack.append(iter(item))
        else:
            found.append(item)
    return found


def _leaf_values(value: Any) -> list[Any]:
    # Objects are not leaves: as in EventBridge, a field holding an object has no value to match
    # and does not "exist" for the exists operator.
    if value is _MISSING or isinstance(value, Mapping):
        return []
    if isinstance(value, list):
        return [item for item in _elements(value) if not isinstance(item, Mapping)]
    return [value]


def _matches(fields: _Fields, value: Any) -> bool:
    if isinstance(value, list):
        # An array matches if one of its elements matches the whole object, so that fields
        # from different elements never combine (EventBridge's array-consistent matching).
        elements = _elements(value)
        if elements:
            return any(_matches(fields, element) for element in elements)
        value = _MISSING
    mapping = value if isinstance(value, Mapping) else {}
    for name, rules in fields.leaves:
        values = _leaf_values(mapping.get(name, _MISSING))
        if not any(rule(values) for rule in rules):
            return False
    for name, nested in fields.nested:
        if not _matches(nested, mapping.get(name, _MISSING)):
            return False
    return all(
        any(_matches(option, value) for option in options) for options in fields.alternatives
    )


class FilterPattern:
    """One parsed filter; `matches` tells whether a record's filter document satisfies it."""

    __slots__ = ("_fields", "source")

    def __init__(self, source: str, fields: _Fields) -> None:
        self.source = source
        self._fields = fields

    def matches(self, document: Mapping[str, Any]) -> bool:
        return _matches(self._fields, document)

    def __repr__(self) -> str:
        return f"FilterPattern({self.source!r})"


def parse_filter(pattern: str, *, number: int | None = None) -> FilterPattern:
    """Check one `filterCriteria.filters[].pattern` as Lambda does. Raises FilterError, whose
    message starts "filter <number>: " when `number` (counted from 1) is given, so that a caller
    with its own field path can leave it out."""
    where = "" if number is None else f"filter {number}: "
    if not isinstance(pattern, str):
        raise FilterError(f"{where}the pattern must be a string of JSON")
    if len(pattern) > MAXIMUM_PATTERN_LENGTH:
        raise FilterError(
            f"{where}the pattern is {len(pattern)} characters long;"
            f" Lambda allows at most {MAXIMUM_PATTERN_LENGTH}"
        )
    try:
        document = load_json(pattern)
    except ValueError as error:
        raise FilterError(f"{where}the pattern is not JSON ({error})") from None
    if not isinstance(document, dict):
        raise FilterError(f"{where}the pattern must be a JSON object")
    return FilterPattern(pattern, _Parser(where).fields(document, ()))


def parse_filters(
    patterns: Sequence[str], *, limit: int = DEFAULT_MAXIMUM_FILTERS
) -> tuple[FilterPattern, ...]:
    """All the filters of one mapping, numbered from 1 in errors; at most `limit` of them."""
    if len(patterns) > limit:
        raise FilterError(f"{len(patterns)} filters; an event source mapping takes at most {limit}")
    return tuple(parse_filter(pattern, number=n) for n, pattern in enumerate(patterns, start=1))


def matches_any(patterns: Iterable[FilterPattern], document: Mapping[str, Any]) -> bool:
    """Lambda's filter criteria: no filters let every record through, several are ORed."""
    patterns = tuple(patterns)
    return not patterns or any(pattern.matches(document) for pattern in patterns)


class _Parser:
    """Turns a decoded pattern into `_Fields`, raising FilterError at the first problem."""

    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, path: tuple[str, ...], problem: str) -> NoReturn:
        at = f"{'.'.join(path)}: " if path else ""
        raise FilterError(f"{self.where}{at}{problem}")

    def fields(self, pattern: dict[str, Any], path: tuple[str, ...]) -> _Fields:
        if len(path) >= MAXIMUM_NESTING:
            self.fail(path, f"nested deeper than {MAXIMUM_NESTING} levels")
        if not pattern:
            self.fail(path, "an empty object matches nothing; name at least one field")
        nested: list[tuple[str, _Fields]] = []
        leaves: list[tuple[str, tuple[Rule, ...]]] = []
        alternatives: list[tuple[_Fields, ...]] = []
        for name, value in pattern.items():
            here = (*path, name)
            if name == "$or":
                alternatives.append(self.alternatives(value, here))
            elif isinstance(value, dict):
                nested.append((name, self.fields(value, here)))
            elif isinstance(value, list):
                leaves.append((name, self.rules(value, here)))
            else:
                self.fail(
                    here,
                    f"must be a list of values or matchers (like [{_show(value)}])"
                    " or an object of nested fields",
                )
        return _Fields(tuple(nested), tuple(leaves), tuple(alternatives))

    def alternatives(self, value: Any, path: tuple[str, ...]) -> tuple[_Fields, ...]:
        if not isinstance(value, list) or len(value) < 2:
            self.fail(path, '"$or" needs a list of at least two objects')
        options = []
        for n, option in enumerate(value):
            if not isinstance(option, dict):
                self.fail((*path[:-1], f"$or[{n}]"), "must be an object of fields")
            options.append(self.fields(option, (*path[:-1], f"$or[{n}]")))
        return tuple(options)

    def rules(self, values: list[Any], path: tuple[str, ...]) -> tuple[Rule, ...]:
        if not values:
            self.fail(path, "needs at least one value or matcher")
        return tuple(self.rule(value, path) for value in values)

    def rule(self, value: Any, path: tuple[str, ...]) -> Rule:
        if isinstance(value, dict):
            if len(value) != 1:
                self.fail(path, f"a matcher has exactly one operator, not {sorted(value)}")
            ((operator, argument),) = value.items()
            return self.operator(operator, argument, path)
        if isinstance(value, list):
            self.fail(path, "lists cannot be nested in a list of values")
        test = self.equals(value, path)
        return lambda values: any(test(v) for v in values)

    def equals(self, expected: Any, path: tuple[str, ...]) -> Callable[[Any], bool]:
        """Exact matching: strings as they are, numbers by their JSON text, null, true, false."""
        if isinstance(expected, str):
            return lambda v: isinstance(v, str) and v == expected
        if expected is None:
            return lambda v: v is None
        if isinstance(expected, bool):
            return lambda v: isinstance(v, bool) and v is expected
        text = _number_text(expected)
        if text is None:
            self.fail(path, f"{_show(expected)} is not a value a filter can match")
        return lambda v: _number_text(v) == text

    def operator(self, operator: str, argument: Any, path: tuple[str, ...]) -> Rule:
        if operator == "exists":
            if not isinstance(argument, bool):
                self.fail(path, '"exists" takes true or false')
            return lambda values: bool(values) is argument
        test: Callable[[Any], bool]
        if operator == "numeric":
            test = self.numeric(argument, path)
        elif operator == "anything-but":
            excluded = self.anything_but(argument, path)

            # Every value the excluded matcher does not match, values of other types included
            # (a number is "anything but" a list of strings); never a missing field.
            def test(v: Any) -> bool:
                return not excluded(v)

        elif operator in ("prefix", "suffix", "equals-ignore-case"):
            test = self.text(operator, argument, path)
        else:
            self.fail(
                path, f'"{operator}" is not one of Lambda\'s operators: {", ".join(OPERATORS)}'
            )
        return lambda values: any(test(v) for v in values)

    def text(self, operator: str, argument: Any, path: tuple[str, ...]) -> Callable[[Any], bool]:
        """prefix, suffix and equals-ignore-case; prefix and suffix also take
        {"equals-ignore-case": "..."}. They match string values only."""
        fold = operator == "equals-ignore-case"
        if operator != "equals-ignore-case" and isinstance(argument, dict):
            if list(argument) != ["equals-ignore-case"]:
                self.fail(path, f'"{operator}" takes a string or {{"equals-ignore-case": "..."}}')
            argument, fold = argument["equals-ignore-case"], True
        if not isinstance(argument, str):
            self.fail(path, f'"{operator}" needs a string')
        # Case is folded with lower(), character by character as Java's equalsIgnoreCase does,
        # not with casefold() (which would make "ß" equal "ss").
        expected = argument.lower() if fold else argument

        def test(v: Any) -> bool:
            if not isinstance(v, str):
                return False
            actual = v.lower() if fold else v
            if operator == "prefix":
                return actual.startswith(expected)
            if operator == "suffix":
                return actual.endswith(expected)
            return actual == expected

        return test

    def anything_but(self, argument: Any, path: tuple[str, ...]) -> Callable[[Any], bool]:
        """What "anything-but" excludes: a string, a number, a list of either, or a prefix,
        suffix or equals-ignore-case matcher."""
        if isinstance(argument, dict):
            if len(argument) != 1 or next(iter(argument)) not in (
                "prefix",
                "suffix",
                "equals-ignore-case",
            ):
                self.fail(
                    path,
                    '"anything-but" takes a value, a list, or one of prefix, suffix and'
                    " equals-ignore-case",
                )
            ((operator, inner),) = argument.items()
            if operator == "equals-ignore-case" and isinstance(inner, list):
                tests = [self.text(operator, item, path) for item in inner]
                if not tests:
                    self.fail(path, '"anything-but" needs at least one value')
                return lambda v: any(test(v) for test in tests)
            return self.text(operator, inner, path)
        excluded = argument if isinstance(argument, list) else [argument]
        if not excluded:
            self.fail(path, '"anything-but" needs at least one value')
        if all(isinstance(item, str) for item in excluded):
            strings = frozenset(excluded)
            return lambda v: isinstance(v, str) and v in strings
        if all(_is_number(item) for item in excluded):
            numbers = frozenset(float(item) for item in excluded)
            return lambda v: _is_number(v) and float(v) in numbers
        return self.fail(path, '"anything-but" takes strings or numbers, all of one kind')

    def numeric(self, argument: Any, path: tuple[str, ...]) -> Callable[[Any], bool]:
        """[">", 0, "<=", 5], ["<", 10], ["=", 3.018e2]: numbers only, compared by value."""
        if not isinstance(argument, list) or len(argument) not in (2, 4):
            self.fail(path, '"numeric" needs an operator and a number, or two of each')
        bounds: dict[str, tuple[str, float]] = {}
        for operator, number in zip(argument[::2], argument[1::2], strict=True):
            if operator not in ("=", "<", "<=", ">", ">="):
                self.fail(path, f'"numeric" operator {_show(operator)} is not =, <, <=, > or >=')
            if not _is_number(number) or not math.isfinite(number):
                self.fail(path, f'"numeric" needs a number after "{operator}"')
            side = "equal" if operator == "=" else "lower" if operator[0] == ">" else "upper"
            if side in bounds or (bounds and "equal" in (side, *bounds)):
                self.fail(path, '"numeric" takes "=" alone, or one lower and one upper bound')
            bounds[side] = (operator, float(number))
        if "equal" in bounds:
            target = bounds["equal"][1]
            return lambda v: _is_number(v) and float(v) == target
        lower, upper = bounds.get("lower"), bounds.get("upper")
        if lower and upper and lower[1] >= upper[1]:
            self.fail(path, f'"numeric" range {_show(argument)} is empty')

        def test(v: Any) -> bool:
            if not _is_number(v):
                return False
            number = float(v)
            if lower and not (number > lower[1] or (lower[0] == ">=" and number == lower[1])):
                return False
            return not upper or number < upper[1] or (upper[0] == "<=" and number == upper[1])

        return test
