"""Function and Trigger manifests shaped like their CRDs (and junk): the models return a
Function or Trigger, or raise SpecError naming each problem's field; nothing else escapes."""

from __future__ import annotations

from typing import Any

from hypothesis import event, given

from fuzz.crd_values import manifests
from kubelambda.api import parse_function, parse_trigger
from kubelambda.api.errors import SpecError
from kubelambda.api.function import Function
from kubelambda.api.trigger import Trigger


def check_refusal(error: SpecError) -> None:
    assert error.problems
    for problem in error.problems:
        assert problem.message and isinstance(problem.path, str), problem


@given(manifests("functions", "Function"))
def test_a_function_manifest_is_parsed_or_refused_with_paths(obj: Any) -> None:
    try:
        function = parse_function(obj)
    except SpecError as error:
        event("refused")
        check_refusal(error)
    else:
        event("parsed")
        assert isinstance(function, Function)


@given(manifests("triggers", "Trigger"))
def test_a_trigger_manifest_is_parsed_or_refused_with_paths(obj: Any) -> None:
    try:
        trigger = parse_trigger(obj)
    except SpecError as error:
        event("refused")
        check_refusal(error)
    else:
        event("parsed")
        assert isinstance(trigger, Trigger)
