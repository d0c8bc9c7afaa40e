"""SAM functions on a custom runtime (``Runtime: provided.al2023`` or ``provided.al2``) convert
to Functions with that spec.runtime: the code folder (local mode) or zip on S3 holds the
executable ``bootstrap``, and Handler is optional, as on Lambda."""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent
from typing import Any

import pytest

from kubelambda.api import parse_function
from kubelambda.api.sam import Conversion, Kind, SamOptions, convert_template, parse_template

TEMPLATE = """
Transform: AWS::Serverless-2016-10-31
Globals:
  Function:
    Timeout: 5
    MemorySize: 256
Resources:
  GoOrders:
    Type: AWS::Serverless::Function
    Metadata: {BuildMethod: go1.x}
    Properties:
      Runtime: provided.al2023
      CodeUri: go/
      Architectures: [x86_64]
      Events:
        Orders: {Type: HttpApi, Properties: {Path: /orders, Method: POST}}
  RicEcho:
    Type: AWS::Serverless::Function
    Properties:
      Runtime: provided.al2
      Handler: handler.echo
      CodeUri: ric/
  Zipped:
    Type: AWS::Serverless::Function
    Properties:
      Runtime: provided.al2023
      Handler: bootstrap
      CodeUri: s3://code-bucket/go.zip
"""


def _bootstrap(folder: Path) -> None:
    folder.mkdir()
    (folder / "bootstrap").write_text("#!/bin/sh\n")
    (folder / "bootstrap").chmod(0o755)


def _convert(tmp_path: Path, text: str, *, code: str) -> Conversion:
    text = dedent(text)
    if "Transform:" not in text:
        text = "Transform: AWS::Serverless-2016-10-31\n" + text
    template = parse_template(text, source="template.yaml")
    return convert_template(template, template_dir=tmp_path, options=SamOptions(code=code))  # type: ignore[arg-type]


def _spec(conversion: Conversion, name: str) -> dict[str, Any]:
    found = next(o for o in conversion.objects if o["metadata"]["name"] == name)  # type: ignore[index]
    return found["spec"]  # type: ignore[no-any-return,index]


def _messages(conversion: Conversion, resource: str, prop: str, kind: Kind) -> str:
    found = conversion.report.of_kind(kind)
    return " | ".join(f.message for f in found if (f.resource, f.prop) == (resource, prop))


def test_local_mode_runs_the_code_folders_bootstrap(tmp_path: Path) -> None:
    _bootstrap(tmp_path / "go")
    _bootstrap(tmp_path / "ric")
    conversion = _convert(tmp_path, TEMPLATE, code="path")
    go = _spec(conversion, "go-orders")
    assert go["runtime"] == "provided.al2023"
    assert go["code"] == {"path": "go"}
    assert "handler" not in go  # optional for a custom runtime: _HANDLER is then unset
    assert (go["timeoutSeconds"], go["memoryMB"]) == (5, 256)
    ric = _spec(conversion, "ric-echo")
    assert (ric["runtime"], ric["handler"], ric["code"]) == (
        "provided.al2",
        "handler.echo",
        {"path": "ric"},
    )
    zipped = _spec(conversion, "zipped")
    assert zipped["code"] == {"s3": {"bucket": "code-bucket", "key": "go.zip"}}
    assert zipped["handler"] == "bootstrap"  # not module.function, and need not be
    assert "build the bootstrap for it" in _messages(
        conversion, "GoOrders", "Architectures", Kind.NOTE
    )
    assert conversion.report.of_kind(Kind.NOT_MAPPED) == []
    for manifest in conversion.objects:
        if manifest["kind"] == "Function":  # type: ignore[index]
            parse_function(manifest, manifest_dir=tmp_path)  # the models take them
    assert "go-orders" in [
        o["spec"].get("function")  # type: ignore[index,union-attr]
        for o in conversion.objects
        if o["kind"] == "Trigger"  # type: ignore[index]
    ]


def test_a_cluster_takes_a_custom_runtime_from_s3_only(tmp_path: Path) -> None:
    _bootstrap(tmp_path / "go")
    _bootstrap(tmp_path / "ric")
    conversion = _convert(tmp_path, TEMPLATE, code="inline")
    assert [o["metadata"]["name"] for o in conversion.objects if o["kind"] == "Function"] == [  # type: ignore[index]
        "zipped"
    ]
    parse_function(next(o for o in conversion.objects if o["kind"] == "Function"))  # type: ignore[index]
    for resource in ("GoOrders", "RicEcho"):
        said = _messages(conversion, resource, "CodeUri", Kind.NOT_MAPPED)
        assert "zip" in said and "onto S3" in said and "kubelambda local" in said, said


def test_inline_code_cannot_hold_a_bootstrap(tmp_path: Path) -> None:
    text = """
    Resources:
      Fn:
        Type: AWS::Serverless::Function
        Properties: {Runtime: provided.al2023, InlineCode: "echo hi"}
    """
    conversion = _convert(tmp_path, text, code="path")
    assert conversion.objects == []
    assert "inline code cannot hold" in _messages(conversion, "Fn", "InlineCode", Kind.NOT_MAPPED)


def test_a_folder_without_a_bootstrap_is_converted_with_a_note(tmp_path: Path) -> None:
    (tmp_path / "go").mkdir()
    (tmp_path / "go" / "main.go").write_text("package main\n")
    text = """
    Resources:
      Fn:
        Type: AWS::Serverless::Function
        Properties: {Runtime: provided.al2023, CodeUri: go/}
    """
    conversion = _convert(tmp_path, text, code="path")
    assert _spec(conversion, "fn")["code"] == {"path": "go"}
    said = _messages(conversion, "Fn", "CodeUri", Kind.NOTE)
    assert "holds no executable bootstrap" in said and "Runtime.InvalidEntrypoint" in said


@pytest.mark.parametrize("runtime", ["provided", "provided.al3000", "go1.x"])
def test_other_os_only_runtimes_are_listed_not_converted(tmp_path: Path, runtime: str) -> None:
    _bootstrap(tmp_path / "go")
    text = f"""
    Resources:
      Fn:
        Type: AWS::Serverless::Function
        Properties: {{Runtime: {runtime}, CodeUri: go/}}
    """
    conversion = _convert(tmp_path, text, code="path")
    assert conversion.objects == []
    said = _messages(conversion, "Fn", "Runtime", Kind.NOT_MAPPED)
    assert "provided.al2023, provided.al2" in said, said
