"""Intrinsic functions resolved as a deployment would: parameters (defaults, overrides, lists),
pseudo parameters, mappings, conditions, and the names and ARNs of the template's resources;
what only CloudFormation knows stays Unresolved, with the reason."""

from __future__ import annotations

import pytest

from kubelambda.api.sam import Stack, TemplateError, parse_template
from kubelambda.api.sam.intrinsics import Resolver
from kubelambda.api.sam.values import Unresolved

TEMPLATE = """
Transform: AWS::Serverless-2016-10-31
Parameters:
  Stage: {Type: String, Default: dev, AllowedValues: [dev, prod]}
  Size: {Type: Number, Default: 3}
  Zones: {Type: CommaDelimitedList, Default: "a, b,c"}
  Token: {Type: String}
  Ami: {Type: "AWS::SSM::Parameter::Value<String>", Default: /shop/ami}
  Code: {Type: String, Default: ab12, AllowedPattern: "[a-z]+[0-9]+"}
Mappings:
  Sizes:
    dev: {Memory: 128}
    prod: {Memory: 1024}
Conditions:
  IsProd: !Equals [!Ref Stage, prod]
  IsDev: !Not [!Condition IsProd]
  Both: !And [!Condition IsDev, !Equals [1, "1"]]
  Either: !Or [!Condition IsProd, !Equals [a, b]]
  Loop: !Condition Loop
Resources:
  Fn: {Type: AWS::Serverless::Function}
  Named: {Type: AWS::Serverless::Function, Properties: {FunctionName: !Sub "${Stage}-named"}}
  Uploads: {Type: AWS::S3::Bucket}
  Named2: {Type: AWS::S3::Bucket, Properties: {BucketName: !Sub "${AWS::StackName}-files"}}
  Jobs: {Type: AWS::SQS::Queue}
  Fifo: {Type: AWS::SQS::Queue, Properties: {FifoQueue: true}}
  Table: {Type: AWS::DynamoDB::Table, Properties: {TableName: orders}}
  Simple: {Type: AWS::Serverless::SimpleTable}
  Topic: {Type: AWS::SNS::Topic}
  Api: {Type: AWS::Serverless::HttpApi}
"""
STACK = Stack(region="eu-west-1", account_id="123456789012", name="shop")


def resolver(**overrides: str) -> Resolver:
    return Resolver(parse_template(TEMPLATE, source="t"), overrides=overrides, stack=STACK)


def value(text: str, **overrides: str) -> object:
    """The resolved value of a YAML expression (tags allowed)."""
    document = parse_template(
        "Transform: AWS::Serverless-2016-10-31\nResources: {}\nValue: " + text, source="t"
    )
    return resolver(**overrides).resolve(document["Value"])


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("!Ref Stage", "dev"),
        ("!Ref Size", "3"),  # a Number parameter is text where it is used
        ("!Ref Zones", ["a", "b", "c"]),
        ("!Ref AWS::Region", "eu-west-1"),
        ("!Ref AWS::AccountId", "123456789012"),
        ("!Ref AWS::StackName", "shop"),
        ("!Ref AWS::Partition", "aws"),
        ("!Ref AWS::URLSuffix", "amazonaws.com"),
        ("!Ref Fn", "Fn"),
        ("!Ref Named", "dev-named"),
        ("!Ref Uploads", "uploads"),
        ("!Ref Named2", "shop-files"),
        ("!Ref Jobs", "https://sqs.eu-west-1.amazonaws.com/123456789012/Jobs"),
        ("!Ref Table", "orders"),
        ("!Ref Simple", "Simple"),
        ("!Ref Topic", "arn:aws:sns:eu-west-1:123456789012:Topic"),
        ("!GetAtt Fn.Arn", "arn:aws:lambda:eu-west-1:123456789012:function:Fn"),
        ("!GetAtt Named.Arn", "arn:aws:lambda:eu-west-1:123456789012:function:dev-named"),
        ("!GetAtt Jobs.Arn", "arn:aws:sqs:eu-west-1:123456789012:Jobs"),
        ("!GetAtt Jobs.QueueName", "Jobs"),
        ("!GetAtt Fifo.QueueName", "Fifo.fifo"),
        ("!GetAtt Uploads.Arn", "arn:aws:s3:::uploads"),
        ("!GetAtt Table.Arn", "arn:aws:dynamodb:eu-west-1:123456789012:table/orders"),
        ("!GetAtt Topic.TopicName", "Topic"),
        (
            "!Sub '${AWS::Region}/${Stage}/${Fn.Arn}'",
            "eu-west-1/dev/arn:aws:lambda:eu-west-1:123456789012:function:Fn",
        ),
        ("!Sub 'keep ${!Literal} and ${Stage}'", "keep ${Literal} and dev"),
        ("!Sub ['${A}-${Stage}', {A: !Ref Size}]", "3-dev"),
        ("!Join ['-', [!Ref Stage, b, 3]]", "dev-b-3"),
        ("!Join [',', !Ref Zones]", "a,b,c"),
        ("!Select [1, !Ref Zones]", "b"),
        ("!Split ['/', a/b]", ["a", "b"]),
        ("!FindInMap [Sizes, !Ref Stage, Memory]", 128),
        ("!If [IsProd, big, small]", "small"),
        ("!If [IsDev, [1, !Ref AWS::NoValue], x]", [1]),
        ("{A: !Ref AWS::NoValue, B: 1}", {"B": 1}),
        ("!Base64 hi", "aGk="),
        ("!ToJsonString {a: [1, !Ref Stage]}", '{"a":[1,"dev"]}'),
        ("!Length [1, 2, 3]", 3),
        ("!Equals [!Ref Stage, dev]", True),
    ],
)
def test_resolves(expression: str, expected: object) -> None:
    assert value(expression) == expected


def test_overrides_replace_defaults() -> None:
    assert value("!FindInMap [Sizes, !Ref Stage, Memory]", Stage="prod") == 1024
    assert value("!If [IsProd, big, small]", Stage="prod") == "big"
    assert value("!Ref Token", Token="s3cret") == "s3cret"


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("!Ref Token", "parameter Token has no Default: give it with --parameter-overrides Token="),
        ("!Ref Ami", "parameter Ami is read from SSM Parameter Store"),
        ("!Ref Nowhere", "Ref Nowhere: no parameter, pseudo parameter or resource of that name"),
        ("!Ref Api", "Ref Api: the id of AWS::Serverless::HttpApi exists only once deployed"),
        (
            "!GetAtt Table.StreamArn",
            "Fn::GetAtt Table.StreamArn (AWS::DynamoDB::Table) is known only once deployed",
        ),
        ("!GetAtt Gone.Arn", "no resource Gone in the template"),
        ("!ImportValue shared", "Fn::ImportValue is known only when CloudFormation deploys"),
        ("!GetAZs ''", "Fn::GetAZs is known only when CloudFormation deploys"),
        ("!Sub '${Token}-x'", "parameter Token has no Default"),
        ("!Join [',', [a, !Ref Token]]", "parameter Token has no Default"),
        ("!Frob x", "YAML tag !Frob is not a CloudFormation intrinsic function"),
        ("!If [Missing, a, b]", "condition Missing is not in the template's Conditions"),
        ("!If [Loop, a, b]", "condition Loop refers to itself"),
        ("!Select [5, [a]]", "Fn::Select: no item 5"),
        ("!FindInMap [Sizes, qa, Memory]", "Fn::FindInMap: no 'qa' in Mappings Sizes"),
    ],
)
def test_what_cannot_be_known_is_unresolved_with_a_reason(expression: str, reason: str) -> None:
    found = value(expression)
    assert isinstance(found, Unresolved)
    assert reason in found.reason


def test_an_unresolved_item_stays_in_place_in_lists_and_maps() -> None:
    found = value("{A: [1, !Ref Token], B: ok}")
    assert isinstance(found, dict)
    assert found["B"] == "ok"
    assert isinstance(found["A"][1], Unresolved)


@pytest.mark.parametrize(
    ("name", "expected"),
    [("IsProd", False), ("IsDev", True), ("Both", True), ("Either", False)],
)
def test_conditions(name: str, expected: bool) -> None:
    assert resolver().condition(name) is expected


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"Nope": "1"}, "parameter overrides name Nope, which the template's Parameters do not"),
        ({"Stage": "qa"}, "parameter Stage='qa' is not one of its AllowedValues: dev, prod"),
        ({"Code": "ABC"}, "parameter Code='ABC' does not match its AllowedPattern"),
    ],
)
def test_overrides_that_do_not_fit_are_refused(overrides: dict[str, str], message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        resolver(**overrides)
