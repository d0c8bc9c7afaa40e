"""Every object of refused.yaml is refused by the models with the field the CRDs name too.

The same table can be applied to a real API server: its manifests are complete.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from kubelambda.api import SpecError, parse_function, parse_trigger

CASES: list[dict[str, Any]] = yaml.safe_load((Path(__file__).parent / "refused.yaml").read_text())


def test_cases_are_many_and_named_once() -> None:
    names = [case["case"] for case in CASES]
    assert len(names) == len(set(names))
    assert len(CASES) >= 15


@pytest.mark.parametrize("case", CASES, ids=[case["case"] for case in CASES])
def test_refused_with_the_field_named(case: dict[str, Any]) -> None:
    manifest = case["manifest"]
    parse = parse_function if manifest["kind"] == "Function" else parse_trigger
    with pytest.raises(SpecError) as caught:
        parse(manifest)
    messages = [p.message for p in caught.value.problems if p.path == case["field"]]
    assert messages, f"no problem at {case['field']}: {caught.value}"
    assert any(case.get("message", "") in message for message in messages), messages
