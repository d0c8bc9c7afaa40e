"""The real API server takes custom-runtime Functions as the models do (tests/unit/api/
test_function_custom_runtime.py): provided.al2023 and provided.al2 with a package and an
optional, free-form handler; it refuses their inline code, and a Python runtime's handler that
is not module.function, naming the field."""

from __future__ import annotations

import json
from typing import Any

import pytest

from harness.apiserver import ApiServer

S3 = {"s3": {"bucket": "code", "key": "gofn.zip"}}


def manifest(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kubelambda.dev/v1alpha1",
        "kind": "Function",
        "metadata": {"name": "gofn", "namespace": "default"},
        "spec": spec,
    }


def apply(kube_api: ApiServer, document: dict[str, Any]) -> Any:
    return kube_api.kubectl(
        "apply", "--dry-run=server", "-f", "-", input=json.dumps(document), check=False
    )


@pytest.mark.parametrize(
    "spec",
    [
        {"runtime": "provided.al2023", "code": S3},
        {"runtime": "provided.al2", "handler": "bootstrap", "code": S3},
        {"runtime": "python3.12", "handler": "app.handler", "code": S3},
    ],
)
def test_accepted(kube_api: ApiServer, crds: None, spec: dict[str, Any]) -> None:
    applied = apply(kube_api, manifest(**spec))
    assert applied.returncode == 0, applied.stderr


@pytest.mark.parametrize(
    ("spec", "field", "message"),
    [
        (
            {"runtime": "provided.al2023", "code": {"inline": {"files": {"bootstrap": "x"}}}},
            "spec.code",
            "must be a package for a provided runtime",
        ),
        (
            {"runtime": "python3.12", "handler": "bootstrap", "code": S3},
            "spec.handler",
            "must be module.function",
        ),
        ({"runtime": "python3.12", "code": S3}, "spec.handler", "is required with spec.runtime"),
        ({"runtime": "provided.al2023", "handler": "a b", "code": S3}, "spec.handler", ""),
    ],
)
def test_refused_naming_the_field(
    kube_api: ApiServer, crds: None, spec: dict[str, Any], field: str, message: str
) -> None:
    refused = apply(kube_api, manifest(**spec))
    assert refused.returncode != 0, refused.stdout
    assert field in refused.stderr, refused.stderr
    assert message in refused.stderr.replace("\n", " "), refused.stderr
