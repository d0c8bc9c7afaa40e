"""drift.contains: a live object still holds what was applied; server additions are not drift."""

from __future__ import annotations

from typing import Any

import pytest

from kubelambda.controller.drift import contains

CASES: list[tuple[str, Any, Any, bool]] = [
    ("equal", {"a": 1}, {"a": 1}, True),
    ("server added a field", {"a": 1, "b": 2}, {"a": 1}, True),
    ("value changed", {"a": 2}, {"a": 1}, False),
    ("field removed", {}, {"a": 1}, False),
    ("nested value changed", {"s": {"x": [1, 2]}}, {"s": {"x": [1, 3]}}, False),
    ("list grew", {"x": [{"n": 1}, {"n": 2}]}, {"x": [{"n": 1}]}, False),
    ("list items with server defaults", {"x": [{"n": 1, "d": True}]}, {"x": [{"n": 1}]}, True),
    ("list order changed", {"x": [2, 1]}, {"x": [1, 2]}, False),
    ("omitted false", {}, {"flag": False}, True),
    ("omitted empty list", {}, {"items": []}, True),
    ("false became true", {"flag": True}, {"flag": False}, False),
    ("int is not a string", {"port": "8080"}, {"port": 8080}, False),
    ("true is not 1", {"n": True}, {"n": 1}, False),
    ("label removed by hand", {"labels": {"a": "1"}}, {"labels": {"a": "1", "b": "2"}}, False),
]


@pytest.mark.parametrize(
    ("live", "desired", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_contains(live: Any, desired: Any, expected: bool) -> None:
    assert contains(live, desired) is expected


def test_a_dropped_key_changes_the_fingerprint_so_it_is_applied_again() -> None:
    from kubelambda.controller.drift import APPLIED_ANNOTATION, fingerprinted

    before = fingerprinted({"metadata": {"name": "c"}, "data": {"app.py": "x", "helper.py": "y"}})
    after = fingerprinted({"metadata": {"name": "c"}, "data": {"app.py": "x"}})
    # What `contains` alone cannot see: the live object still holds everything wanted now.
    assert contains(before["data"], after["data"])
    assert not contains(before, after)
    assert contains(
        before,
        fingerprinted({"metadata": {"name": "c"}, "data": {"helper.py": "y", "app.py": "x"}}),
    )
    assert (
        before["metadata"]["annotations"][APPLIED_ANNOTATION]
        != after["metadata"]["annotations"][APPLIED_ANNOTATION]
    )
