"""Reading SAM templates: CloudFormation's short-form tags in their long form, JSON, and the
errors that name the file and the problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubelambda.api.sam import TemplateError, is_sam_template, load_template, parse_template
from kubelambda.api.sam.template import UnknownTag

HEAD = "Transform: AWS::Serverless-2016-10-31\n"


def test_short_form_tags_become_the_long_form() -> None:
    text = HEAD + (
        "Resources:\n"
        "  Fn:\n"
        "    Properties:\n"
        "      A: !Ref Stage\n"
        "      B: !Sub '${AWS::Region}-x'\n"
        "      C: !GetAtt Queue.Arn\n"
        "      D: !GetAtt [Db, Endpoint.Address]\n"
        "      E: !GetAtt Db.Endpoint.Address\n"
        "      F: !Join [',', [a, !Ref B]]\n"
        "      G: !If [IsProd, !Select [0, !Split [',', 'a,b']], !FindInMap [M, k, v]]\n"
        "      H: !Equals [!Ref Stage, prod]\n"
        "      I: !Not [!Condition IsProd]\n"
        "      J: !Base64 text\n"
        "      K: !ImportValue shared-vpc\n"
    )
    props = parse_template(text, source="t")["Resources"]["Fn"]["Properties"]  # type: ignore[index]
    assert props == {
        "A": {"Ref": "Stage"},
        "B": {"Fn::Sub": "${AWS::Region}-x"},
        "C": {"Fn::GetAtt": ["Queue", "Arn"]},
        "D": {"Fn::GetAtt": ["Db", "Endpoint.Address"]},
        "E": {"Fn::GetAtt": ["Db", "Endpoint.Address"]},
        "F": {"Fn::Join": [",", ["a", {"Ref": "B"}]]},
        "G": {
            "Fn::If": [
                "IsProd",
                {"Fn::Select": [0, {"Fn::Split": [",", "a,b"]}]},
                {"Fn::FindInMap": ["M", "k", "v"]},
            ]
        },
        "H": {"Fn::Equals": [{"Ref": "Stage"}, "prod"]},
        "I": {"Fn::Not": [{"Condition": "IsProd"}]},
        "J": {"Fn::Base64": "text"},
        "K": {"Fn::ImportValue": "shared-vpc"},
    }


def test_an_unknown_tag_is_kept_not_a_crash() -> None:
    text = HEAD + "Resources:\n  Fn:\n    Properties:\n      A: !Frobnicate [1, 2]\n"
    props = parse_template(text, source="t")["Resources"]["Fn"]["Properties"]  # type: ignore[index]
    assert props == {"A": UnknownTag("!Frobnicate", [1, 2])}


def test_dates_stay_text_as_cloudformation_reads_them() -> None:
    text = HEAD + "Resources: {}\nAWSTemplateFormatVersion: 2010-09-09\n"
    assert parse_template(text, source="t")["AWSTemplateFormatVersion"] == "2010-09-09"


def test_json_templates() -> None:
    text = '{"Transform": ["AWS::Serverless-2016-10-31"], "Resources": {"A": {"Type": "X"}}}'
    assert parse_template(text, source="t")["Resources"] == {"A": {"Type": "X"}}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Resources: {}\n", "t is not an AWS SAM template: it has no 'Transform: AWS::Server"),
        (HEAD + "Resources:\n  A: 1\n  A: 2\n", "found duplicate key 'A'"),
        (HEAD + "Resources: [\n", "t is not valid YAML at line"),
        ('{"Transform": "AWS::Serverless-2016-10-31",}', "t is not valid JSON at line 1"),
        ("- a list\n", "not an AWS SAM template"),
    ],
)
def test_what_is_not_a_template_is_named(text: str, message: str) -> None:
    with pytest.raises(TemplateError, match=message.replace("(", r"\(")):
        parse_template(text, source="t")


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({"Transform": "AWS::Serverless-2016-10-31"}, True),
        ({"Transform": ["AWS::LanguageExtensions", "AWS::Serverless-2016-10-31"]}, True),
        ({"Transform": "AWS::Include"}, False),
        ({"apiVersion": "kubelambda.dev/v1alpha1"}, False),
        (["Transform"], False),
    ],
)
def test_is_sam_template(document: object, expected: bool) -> None:
    assert is_sam_template(document) is expected


def test_load_template_names_an_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match=f"{tmp_path / 'missing.yaml'} cannot be read"):
        load_template(tmp_path / "missing.yaml")
