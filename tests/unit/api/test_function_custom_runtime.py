"""Custom runtimes in the models: spec.runtime provided.al2023 and provided.al2 take a package
(code.s3, or code.path locally) whose bootstrap runs it, with an optional, free-form handler;
both platforms tell the runtime which runtime it is (KUBELAMBDA_RUNTIME)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kubelambda.api import SpecError, parse_function
from kubelambda.api.environment import runtime_environment
from kubelambda.platforms.local.functions import prepare

S3 = {"s3": {"bucket": "code", "key": "gofn.zip"}}


def manifest(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kubelambda.dev/v1alpha1",
        "kind": "Function",
        "metadata": {"name": "gofn", "namespace": "team-a"},
        "spec": spec,
    }


@pytest.mark.parametrize("runtime", ["provided.al2023", "provided.al2"])
def test_a_provided_runtime_needs_no_handler(runtime: str) -> None:
    function = parse_function(manifest(runtime=runtime, code=S3))
    assert function.runtime == runtime and function.handler is None
    assert function.custom_runtime


def test_a_provided_runtimes_handler_is_free_form(tmp_path: Path) -> None:
    (tmp_path / "gofn").mkdir()
    function = parse_function(
        manifest(runtime="provided.al2023", handler="bootstrap", code={"path": "gofn"}),
        manifest_dir=tmp_path,
    )
    assert function.handler == "bootstrap"


@pytest.mark.parametrize(
    ("spec", "field", "message"),
    [
        (
            {
                "runtime": "provided.al2023",
                "code": {"inline": {"files": {"bootstrap": "#!/bin/sh"}}},
            },
            "spec.code",
            "must be a package for spec.runtime provided.al2023",
        ),
        (
            {"runtime": "provided.al2", "code": {"configMapRef": {"name": "code"}}},
            "spec.code",
            "inline files and ConfigMaps cannot hold the executable bootstrap",
        ),
        (
            {"runtime": "provided.al2023", "handler": "has space", "code": S3},
            "spec.handler",
            "a handler name without spaces",
        ),
        (
            {"runtime": "python3.12", "handler": "bootstrap", "code": S3},
            "spec.handler",
            "module.function",
        ),
        ({"runtime": "python3.12", "code": S3}, "spec.handler", "is required with spec.runtime"),
        ({"runtime": "provided", "code": S3}, "spec.runtime", "must be one of"),
    ],
)
def test_refused(spec: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_function(manifest(**spec))
    messages = [problem.message for problem in caught.value.problems if problem.path == field]
    assert any(message in text for text in messages), caught.value


def test_the_runtime_is_told_a_custom_runtime_and_only_that() -> None:
    def rendered(**spec: Any) -> dict[str, str | None]:
        variables = runtime_environment(
            parse_function(manifest(**spec)), region="eu-west-1", account_id="1"
        )
        return {variable.name: variable.value for variable in variables}

    custom = rendered(runtime="provided.al2023", code=S3)
    assert custom["KUBELAMBDA_RUNTIME"] == "provided.al2023"
    assert "_HANDLER" not in custom
    python = rendered(runtime="python3.12", handler="app.handler", code=S3)
    assert "KUBELAMBDA_RUNTIME" not in python


def test_local_mode_prepares_a_provided_function_from_a_code_folder(tmp_path: Path) -> None:
    code = tmp_path / "gofn"
    code.mkdir()
    function = parse_function(
        manifest(runtime="provided.al2023", code={"path": "gofn"}), manifest_dir=tmp_path
    )
    local = prepare(function, workdir=tmp_path / "work", region="eu-west-1", account_id="1")
    assert local.code_dir == code
    assert local.environment["KUBELAMBDA_RUNTIME"] == "provided.al2023"
    assert local.environment["LAMBDA_TASK_ROOT"] == str(code)
