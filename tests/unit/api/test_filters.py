"""api/filters.py: Lambda's filter criteria, each operator matching and not matching, and the
patterns Lambda refuses, with messages that name the filter and the field."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kubelambda.api.filters import (
    FilterError,
    JsonNumber,
    load_json,
    matches_any,
    parse_filter,
    parse_filters,
)


def document(text: str) -> Any:
    """A filter document as the dispatcher makes one: numbers keep their JSON text."""
    return load_json(text)


MATCHING = [
    # Equals: strings exactly, without case folding
    ('{"Name": ["Alice"]}', '{"Name": "Alice"}', True),
    ('{"Name": ["Alice"]}', '{"Name": "alice"}', False),
    ('{"Name": ["Alice"]}', '{"Other": "Alice"}', False),
    # Or within a field: any listed value
    ('{"Pay": ["Credit", "Debit"]}', '{"Pay": "Debit"}', True),
    ('{"Pay": ["Credit", "Debit"]}', '{"Pay": "Cash"}', False),
    # Numbers are compared as they are written (Lambda: 300, 300.0 and 3.0e2 are not equal)
    ('{"Price": [300]}', '{"Price": 300}', True),
    ('{"Price": [300]}', '{"Price": 300.0}', False),
    ('{"Price": [300]}', '{"Price": "300"}', False),
    ('{"Price": ["300"]}', '{"Price": 300}', False),
    # Null and empty
    ('{"UserID": [null]}', '{"UserID": null}', True),
    ('{"UserID": [null]}', '{"UserID": ""}', False),
    ('{"UserID": [null]}', "{}", False),
    ('{"LastName": [""]}', '{"LastName": ""}', True),
    ('{"LastName": [""]}', '{"LastName": null}', False),
    # true and false are JSON literals, not numbers
    ('{"On": [true]}', '{"On": true}', True),
    ('{"On": [true]}', '{"On": 1}', False),
    ('{"Count": [1]}', '{"Count": true}', False),
    # And: every field, nested objects field by field
    (
        '{"Location": ["New York"], "Day": ["Monday"]}',
        '{"Location": "New York", "Day": "Monday"}',
        True,
    ),
    (
        '{"Location": ["New York"], "Day": ["Monday"]}',
        '{"Location": "New York", "Day": "Friday"}',
        False,
    ),
    ('{"Location": ["New York"], "Day": ["Monday"]}', '{"Location": "New York"}', False),
    ('{"a": {"b": {"c": ["x"]}}}', '{"a": {"b": {"c": "x", "d": 1}}}', True),
    ('{"a": {"b": {"c": ["x"]}}}', '{"a": {"b": "x"}}', False),
    ('{"a": ["x"]}', '{"a": {"x": 1}}', False),  # an object is not a leaf value
    # Arrays in the document: any element
    ('{"tags": ["b"]}', '{"tags": ["a", "b"]}', True),
    ('{"tags": ["c"]}', '{"tags": ["a", ["b", ["c"]]]}', True),
    ('{"tags": ["c"]}', '{"tags": ["a", "b"]}', False),
    ('{"tags": ["c"]}', '{"tags": []}', False),
    # ... and the fields of one pattern object must come from one array element
    ('{"e": {"first": ["Anna"]}}', '{"e": [{"first": "John"}, {"first": "Anna"}]}', True),
    (
        '{"e": {"first": ["Anna"], "last": ["Smith"]}}',
        '{"e": [{"first": "Anna", "last": "Smith"}]}',
        True,
    ),
    (
        '{"e": {"first": ["Anna"], "last": ["Jones"]}}',
        '{"e": [{"first": "Anna", "last": "Smith"}, {"first": "Peter", "last": "Jones"}]}',
        False,
    ),
    # prefix / suffix / equals-ignore-case, strings only
    ('{"Region": [{"prefix": "us-"}]}', '{"Region": "us-east-1"}', True),
    ('{"Region": [{"prefix": "us-"}]}', '{"Region": "eu-west-1"}', False),
    ('{"Region": [{"prefix": "us-"}]}', '{"Region": "US-east-1"}', False),
    ('{"Code": [{"prefix": "1"}]}', '{"Code": 123}', False),
    ('{"Region": [{"prefix": {"equals-ignore-case": "US-"}}]}', '{"Region": "us-east-1"}', True),
    ('{"File": [{"suffix": ".png"}]}', '{"File": "cat.png"}', True),
    ('{"File": [{"suffix": ".png"}]}', '{"File": "cat.jpg"}', False),
    ('{"File": [{"suffix": {"equals-ignore-case": ".PNG"}}]}', '{"File": "cat.png"}', True),
    ('{"Name": [{"equals-ignore-case": "alice"}]}', '{"Name": "ALICE"}', True),
    ('{"Name": [{"equals-ignore-case": "alice"}]}', '{"Name": "alicia"}', False),
    ('{"Street": [{"equals-ignore-case": "strasse"}]}', '{"Street": "STRAßE"}', False),
    # anything-but: any present value but those
    ('{"Weather": [{"anything-but": ["Raining"]}]}', '{"Weather": "Sunny"}', True),
    ('{"Weather": [{"anything-but": ["Raining"]}]}', '{"Weather": "Raining"}', False),
    ('{"Weather": [{"anything-but": ["Raining"]}]}', "{}", False),
    ('{"Weather": [{"anything-but": ["Raining"]}]}', '{"Weather": 5}', True),
    ('{"Weather": [{"anything-but": "Raining"}]}', '{"Weather": "Raining"}', False),
    ('{"State": [{"anything-but": ["stopped", "overloaded"]}]}', '{"State": "overloaded"}', False),
    ('{"Limit": [{"anything-but": [100, 200]}]}', '{"Limit": 200.0}', False),
    ('{"Limit": [{"anything-but": [100, 200]}]}', '{"Limit": 150}', True),
    ('{"Limit": [{"anything-but": 100}]}', '{"Limit": 100}', False),
    ('{"Region": [{"anything-but": {"prefix": "us-"}}]}', '{"Region": "eu-west-1"}', True),
    ('{"Region": [{"anything-but": {"prefix": "us-"}}]}', '{"Region": "us-east-1"}', False),
    ('{"File": [{"anything-but": {"suffix": ".png"}}]}', '{"File": "cat.png"}', False),
    ('{"File": [{"anything-but": {"suffix": ".png"}}]}', '{"File": "cat.gif"}', True),
    ('{"S": [{"anything-but": {"equals-ignore-case": ["init", "done"]}}]}', '{"S": "DONE"}', False),
    ('{"S": [{"anything-but": {"equals-ignore-case": "init"}}]}', '{"S": "running"}', True),
    # numeric: JSON numbers by value
    ('{"Price": [{"numeric": [">", 10, "<=", 20]}]}', '{"Price": 20}', True),
    ('{"Price": [{"numeric": [">", 10, "<=", 20]}]}', '{"Price": 10}', False),
    ('{"Price": [{"numeric": [">", 10, "<=", 20]}]}', '{"Price": 20.5}', False),
    ('{"Price": [{"numeric": [">=", 10, "<", 20]}]}', '{"Price": 10}', True),
    ('{"Price": [{"numeric": [">=", 10, "<", 20]}]}', '{"Price": 20}', False),
    ('{"Price": [{"numeric": ["<", 10]}]}', '{"Price": -3.5}', True),
    ('{"Price": [{"numeric": ["<", 10]}]}', '{"Price": "5"}', False),
    ('{"Price": [{"numeric": ["<", 10]}]}', '{"Price": true}', False),
    ('{"Price": [{"numeric": ["=", 100]}]}', '{"Price": 1.0e2}', True),
    ('{"Price": [{"numeric": ["=", 100]}]}', '{"Price": 100.5}', False),
    ('{"Price": [{"numeric": [">", 0]}]}', '{"Price": [-1, 3]}', True),
    # exists: leaf fields only
    ('{"Product": [{"exists": true}]}', '{"Product": "x"}', True),
    ('{"Product": [{"exists": true}]}', '{"Product": null}', True),
    ('{"Product": [{"exists": true}]}', "{}", False),
    ('{"Product": [{"exists": true}]}', '{"Product": {"name": "x"}}', False),
    ('{"Product": [{"exists": true}]}', '{"Product": []}', False),
    ('{"Product": [{"exists": false}]}', "{}", True),
    ('{"Product": [{"exists": false}]}', '{"Product": ""}', False),
    ('{"Product": [{"exists": false}]}', '{"Product": {"name": "x"}}', True),
    ('{"a": {"b": [{"exists": false}]}}', "{}", True),
    ('{"a": {"b": [{"exists": false}]}}', '{"a": {"b": 1}}', False),
    # matchers and values mixed in one list
    ('{"Region": ["eu-west-1", {"prefix": "us-"}]}', '{"Region": "eu-west-1"}', True),
    ('{"Region": ["eu-west-1", {"prefix": "us-"}]}', '{"Region": "ap-south-1"}', False),
    # $or: one of the alternatives, alongside the other fields
    ('{"$or": [{"a": ["x"]}, {"b": ["y"]}]}', '{"b": "y"}', True),
    ('{"$or": [{"a": ["x"]}, {"b": ["y"]}]}', '{"a": "y", "b": "x"}', False),
    ('{"s": ["aws"], "$or": [{"a": ["x"]}, {"b": ["y"]}]}', '{"s": "aws", "a": "x"}', True),
    ('{"s": ["aws"], "$or": [{"a": ["x"]}, {"b": ["y"]}]}', '{"s": "gcp", "a": "x"}', False),
    ('{"d": {"$or": [{"a": [1]}, {"b": [2], "c": [3]}]}}', '{"d": {"b": 2, "c": 3}}', True),
    ('{"d": {"$or": [{"a": [1]}, {"b": [2], "c": [3]}]}}', '{"d": {"b": 2, "c": 4}}', False),
    (
        '{"$or": [{"a": [1]}, {"$or": [{"b": [2]}, {"c": [3]}]}]}',
        '{"c": 3}',
        True,
    ),
    # a duplicate key: the last one counts, as Lambda documents
    ('{"a": ["x"], "a": ["y"]}', '{"a": "y"}', True),
    ('{"a": ["x"], "a": ["y"]}', '{"a": "x"}', False),
]


@pytest.mark.parametrize(("pattern", "event", "expected"), MATCHING)
def test_pattern_matches_documents_as_lambda_does(pattern: str, event: str, expected: bool) -> None:
    assert parse_filter(pattern).matches(document(event)) is expected


def test_documents_of_plain_python_values_match_like_decoded_json() -> None:
    """Callers may build documents themselves; int and float read as json.dumps writes them."""
    assert parse_filter('{"n": [300]}').matches({"n": 300})
    assert not parse_filter('{"n": [300]}').matches({"n": 300.0})
    assert parse_filter('{"n": [300.0]}').matches({"n": 300.0})
    assert parse_filter('{"n": [{"numeric": ["=", 300]}]}').matches({"n": 300.0})


def test_json_number_keeps_its_text_and_its_value() -> None:
    number = load_json("3.0e2")
    assert isinstance(number, JsonNumber)
    assert (number.text, number) == ("3.0e2", 300)


def test_matches_any_lets_everything_through_without_filters_and_ors_several() -> None:
    filters = parse_filters(['{"a": ["x"]}', '{"b": ["y"]}'])
    assert matches_any([], {"anything": 1})
    assert matches_any(filters, {"b": "y"})
    assert not matches_any(filters, {"a": "y", "b": "x"})


REFUSED = [
    ("not json", "filter 1: the pattern is not JSON"),
    ('{"a": [NaN]}', "the pattern is not JSON (NaN is not JSON)"),
    ("[1]", "filter 1: the pattern must be a JSON object"),
    ("{}", "filter 1: an empty object matches nothing"),
    ('{"a": {}}', "filter 1: a: an empty object matches nothing"),
    ('{"a": "x"}', 'filter 1: a: must be a list of values or matchers (like ["x"])'),
    ('{"a": []}', "filter 1: a: needs at least one value or matcher"),
    ('{"a": [["x"]]}', "filter 1: a: lists cannot be nested"),
    (
        '{"a": {"b": [{"numeric": [">"]}]}}',
        'filter 1: a.b: "numeric" needs an operator and a number',
    ),
    ('{"a": [{"numeric": 5}]}', '"numeric" needs an operator and a number'),
    ('{"a": [{"numeric": ["!=", 1]}]}', '"numeric" operator "!=" is not =, <, <=, > or >='),
    ('{"a": [{"numeric": [">", "1"]}]}', '"numeric" needs a number after ">"'),
    ('{"a": [{"numeric": [">", true]}]}', '"numeric" needs a number after ">"'),
    ('{"a": [{"numeric": ["=", 1, "<", 2]}]}', 'takes "=" alone, or one lower and one upper'),
    ('{"a": [{"numeric": [">", 1, ">=", 2]}]}', 'takes "=" alone, or one lower and one upper'),
    ('{"a": [{"numeric": [">", 5, "<", 1]}]}', '"numeric" range [">", 5, "<", 1] is empty'),
    ('{"a": [{"numeric": [">", 1e999]}]}', '"numeric" needs a number after ">"'),
    ('{"a": [{"exists": "yes"}]}', '"exists" takes true or false'),
    ('{"a": [{"prefix": 1}]}', '"prefix" needs a string'),
    ('{"a": [{"suffix": {"wildcard": "x"}}]}', '"suffix" takes a string or {"equals-ignore-case"'),
    ('{"a": [{"equals-ignore-case": ["x"]}]}', '"equals-ignore-case" needs a string'),
    ('{"a": [{"wildcard": "x*"}]}', '"wildcard" is not one of Lambda\'s operators: prefix, suffix'),
    ('{"a": [{"cidr": "10.0.0.0/8"}]}', '"cidr" is not one of Lambda\'s operators'),
    ('{"a": [{"prefix": "x", "suffix": "y"}]}', "a matcher has exactly one operator"),
    ('{"a": [{}]}', "a matcher has exactly one operator"),
    ('{"a": [{"anything-but": []}]}', '"anything-but" needs at least one value'),
    ('{"a": [{"anything-but": ["x", 1]}]}', '"anything-but" takes strings or numbers, all of one'),
    ('{"a": [{"anything-but": [null]}]}', '"anything-but" takes strings or numbers'),
    ('{"a": [{"anything-but": {"numeric": [">", 1]}}]}', '"anything-but" takes a value, a list'),
    ('{"$or": [{"a": ["x"]}]}', 'filter 1: $or: "$or" needs a list of at least two objects'),
    ('{"$or": {"a": ["x"]}}', '"$or" needs a list of at least two objects'),
    ('{"$or": [{"a": ["x"]}, ["y"]]}', "filter 1: $or[1]: must be an object of fields"),
    ('{"$or": [{"a": ["x"]}, {"b": "y"}]}', "filter 1: $or[1].b: must be a list"),
    (
        '{"a": ["' + "x" * 5000 + '"]}',
        "the pattern is 5011 characters long; Lambda allows at most 4096",
    ),
    ("[" * 2000 + "]" * 2000, "the pattern is not JSON (nested too deeply)"),
    ('{"a":' * 33 + '["x"]' + "}" * 33, "nested deeper than 32 levels"),
]


@pytest.mark.parametrize(("pattern", "message"), REFUSED)
def test_refused_pattern_names_the_problem_and_where(pattern: str, message: str) -> None:
    with pytest.raises(FilterError) as raised:
        parse_filters([pattern])
    assert message in str(raised.value)


def test_nesting_just_within_the_bound_is_accepted() -> None:
    pattern = '{"a":' * 32 + '["x"]' + "}" * 32
    event: Any = "x"
    for _ in range(32):
        event = {"a": event}
    assert parse_filter(pattern).matches(event)


def test_errors_number_the_filter_at_fault() -> None:
    with pytest.raises(FilterError) as raised:
        parse_filters(['{"a": ["x"]}', '{"price": [{"numeric": [">"]}]}'])
    assert str(raised.value) == (
        'filter 2: price: "numeric" needs an operator and a number, or two of each'
    )


def test_at_most_five_filters_by_default_as_lambda() -> None:
    six = [json.dumps({"a": [n]}) for n in range(6)]
    with pytest.raises(FilterError, match="6 filters; an event source mapping takes at most 5"):
        parse_filters(six)
    assert len(parse_filters(six, limit=10)) == 6


def test_a_pattern_of_exactly_4096_characters_is_accepted() -> None:
    pattern = '{"a": ["' + "x" * (4096 - 11) + '"]}'
    assert len(pattern) == 4096
    assert parse_filter(pattern).matches({"a": "x" * 4085})


def test_without_a_number_the_message_starts_at_the_field() -> None:
    """For callers that name the filter with their own path (spec.queue.filterCriteria...)."""
    with pytest.raises(FilterError) as raised:
        parse_filter('{"price": [{"exists": 1}]}')
    assert str(raised.value) == 'price: "exists" takes true or false'
