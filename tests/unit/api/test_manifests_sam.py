"""load_manifests on AWS SAM templates: a template file (or one in a folder of manifests) is
converted in memory, code folders as spec.code.path; what does not map is warned about; a
manifest that only mentions the transform stays a manifest."""

from __future__ import annotations

import shutil
from pathlib import Path
from textwrap import dedent

import pytest

from kubelambda.api import FolderCode, Function, ManifestError, Trigger, load_manifests

SHOP = Path(__file__).parent / "sam" / "templates" / "shop"
TEMPLATE = """\
Transform: AWS::Serverless-2016-10-31
Resources:
  OrderHandler:
    Type: AWS::Serverless::Function
    Properties:
      Runtime: python3.12
      Handler: app.handler
      CodeUri: orders/
      Layers: [arn:aws:lambda:us-east-1:1:layer:x:1]
      Policies: [AWSLambdaBasicExecutionRole]
      Events:
        Api: {Type: HttpApi, Properties: {Path: /orders, Method: GET}}
"""
MANIFEST = """\
# Not a template, though it names AWS::Serverless-2016-10-31 in a comment.
apiVersion: kubelambda.dev/v1alpha1
kind: Trigger
metadata: {name: orders-tick}
spec: {function: order-handler, schedule: {expression: rate(1 hour)}}
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    shutil.copytree(SHOP / "orders", tmp_path / "orders")
    (tmp_path / "template.yaml").write_text(TEMPLATE)
    return tmp_path


def test_a_template_file_is_served_as_its_functions_and_triggers(project: Path) -> None:
    warnings: list[str] = []
    loaded = load_manifests(project / "template.yaml", on_warning=warnings.append)
    function, trigger = loaded
    assert isinstance(function, Function) and isinstance(trigger, Trigger)
    assert (function.name, function.lambda_name) == ("order-handler", "OrderHandler")
    assert function.code == FolderCode(path=project / "orders")
    assert trigger.function == "order-handler"
    template = project / "template.yaml"
    assert f"{template}: not mapped: OrderHandler.Layers: arn:" in "\n".join(warnings)
    assert "is a published layer, which cannot be fetched" in "\n".join(warnings)
    assert warnings[-1] == (
        f"{template}: 1 properties ignored as meaningless here (IAM, tags, …):"
        f" `kubelambda sam convert {template}` lists them"
    )


def test_a_template_sits_in_a_folder_of_manifests(project: Path) -> None:
    (project / "schedule.yaml").write_text(MANIFEST)
    loaded = load_manifests(project, on_warning=lambda _: None)
    assert [(type(o).__name__, o.name) for o in loaded] == [
        ("Trigger", "orders-tick"),
        ("Function", "order-handler"),
        ("Trigger", "order-handler-api"),
    ]


def test_warnings_are_logged_by_default(project: Path, caplog: pytest.LogCaptureFixture) -> None:
    load_manifests(project / "template.yaml")
    assert any("not mapped: OrderHandler.Layers" in r.message for r in caplog.records)


def test_a_template_that_cannot_be_converted_is_a_manifest_error(tmp_path: Path) -> None:
    path = tmp_path / "template.yaml"
    path.write_text("Transform: AWS::Serverless-2016-10-31\nResources: []\n")
    with pytest.raises(ManifestError) as caught:
        load_manifests(path)
    [problem] = caught.value.problems
    assert problem.file == path
    assert "Resources must map logical ids to resources" in problem.message


def test_a_template_whose_code_is_missing_names_the_folder(tmp_path: Path) -> None:
    path = tmp_path / "template.yaml"
    path.write_text(TEMPLATE)
    warnings: list[str] = []
    assert load_manifests(path, on_warning=warnings.append) == []
    assert any(f"{tmp_path / 'orders'} is not a folder" in w for w in warnings)


def test_a_name_the_template_and_a_manifest_both_define_is_refused(project: Path) -> None:
    (project / "z.yaml").write_text(
        dedent(
            """\
            apiVersion: kubelambda.dev/v1alpha1
            kind: Trigger
            metadata: {name: order-handler-api}
            spec: {function: order-handler, http: {path: /other}}
            """
        )
    )
    with pytest.raises(ManifestError) as caught:
        load_manifests(project, on_warning=lambda _: None)
    [problem] = caught.value.problems
    assert problem.message == (
        f"Trigger default/order-handler-api is already defined in {project / 'template.yaml'}"
    )
