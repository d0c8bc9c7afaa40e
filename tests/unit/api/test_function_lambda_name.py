"""A Function's Lambda name: the annotation kubelambda.dev/function-name, which the Invoke API
also resolves (FunctionName="OrderHandler" for Function order-handler)."""

from __future__ import annotations

from typing import Any

import pytest

from kubelambda.api import SpecError, parse_function
from kubelambda.api.function import LAMBDA_NAME_ANNOTATION


def manifest(annotations: dict[str, Any] | None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "order-handler"}
    if annotations is not None:
        metadata["annotations"] = annotations
    return {
        "apiVersion": "kubelambda.dev/v1alpha1",
        "kind": "Function",
        "metadata": metadata,
        "spec": {
            "runtime": "python3.12",
            "handler": "app.handler",
            "code": {"inline": {"files": {"app.py": "def handler(e, c): return e"}}},
        },
    }


@pytest.mark.parametrize(
    ("annotations", "lambda_name"),
    [
        (None, None),
        ({"team": "shop"}, None),
        ({LAMBDA_NAME_ANNOTATION: "OrderHandler"}, "OrderHandler"),
        ({LAMBDA_NAME_ANNOTATION: "shop-Orders_v2"}, "shop-Orders_v2"),
        ({LAMBDA_NAME_ANNOTATION: "x" * 64}, "x" * 64),
    ],
)
def test_the_lambda_name_comes_from_the_annotation(
    annotations: dict[str, Any] | None, lambda_name: str | None
) -> None:
    assert parse_function(manifest(annotations)).lambda_name == lambda_name


@pytest.mark.parametrize("value", ["Order.Handler", "", "x" * 65, "arn:aws:lambda:x", 7])
def test_a_lambda_name_lambda_would_refuse_is_reported(value: object) -> None:
    with pytest.raises(SpecError) as caught:
        parse_function(manifest({LAMBDA_NAME_ANNOTATION: value}))
    assert caught.value.paths == (f"metadata.annotations[{LAMBDA_NAME_ANNOTATION}]",)
    assert "must be a Lambda function name" in str(caught.value)
