"""The names, Refs and attributes of a template's own resources, as CloudFormation would give
them, and the stack's pseudo parameters.

``intrinsics.Resolver`` calls ``ref`` and ``get_att``; the converter calls ``physical_name``.
A resource without an explicit name gets its logical id (lowercased for a bucket), where
CloudFormation would make up ``STACK-LOGICALID-RANDOM``: the converted manifests need a name
that is the same on every run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Protocol

from kubelambda.api.sam.values import Unresolved

FUNCTION_TYPES: Final = ("AWS::Serverless::Function", "AWS::Lambda::Function")
# The property that names a resource of each type.
_NAME_PROPERTY: Final = {
    "AWS::Serverless::Function": "FunctionName",
    "AWS::Lambda::Function": "FunctionName",
    "AWS::S3::Bucket": "BucketName",
    "AWS::SQS::Queue": "QueueName",
    "AWS::SNS::Topic": "TopicName",
    "AWS::DynamoDB::Table": "TableName",
    "AWS::Serverless::SimpleTable": "TableName",
    "AWS::SecretsManager::Secret": "Name",
}


@dataclass(frozen=True, kw_only=True)
class Stack:
    """The stack the template would be deployed as: what the pseudo parameters say."""

    region: str = "us-east-1"
    account_id: str = "000000000000"
    name: str = "sam-app"

    def pseudo(self, name: str) -> object | None:
        """The value of pseudo parameter ``name`` (AWS::Region, …), or None for another name."""
        values: dict[str, object] = {
            "AWS::Region": self.region,
            "AWS::AccountId": self.account_id,
            "AWS::StackName": self.name,
            "AWS::StackId": f"arn:aws:cloudformation:{self.region}:{self.account_id}:stack/"
            f"{self.name}/00000000-0000-0000-0000-000000000000",
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NotificationARNs": [],
        }
        return values.get(name)


class Resolves(Protocol):
    """What ref and get_att need of the resolver: its stack, and resolving a property."""

    @property
    def stack(self) -> Stack: ...

    def resolve(self, value: object) -> object: ...


def logical_ref(raw: object) -> str | None:
    """The logical id a raw (unresolved) value points at: Ref X, GetAtt X.Attr, or X itself."""
    if isinstance(raw, str):
        return raw
    if isinstance(raw, Mapping) and len(raw) == 1:
        [(key, argument)] = raw.items()
        if key == "Ref" and isinstance(argument, str):
            return argument
        if key == "Fn::GetAtt" and isinstance(argument, list) and argument:
            return str(argument[0])
    return None


def resource_type(resource: Mapping[str, object]) -> str:
    kind = resource.get("Type")
    return kind if isinstance(kind, str) else ""


def physical_name(logical_id: str, resource: Mapping[str, object], resolver: Resolves) -> object:
    """The resource's name: its naming property resolved (a string, or an Unresolved marker),
    else its logical id (lowercased for a bucket; with .fifo for a FIFO queue)."""
    kind = resource_type(resource)
    properties = resource.get("Properties")
    properties = properties if isinstance(properties, Mapping) else {}
    key = _NAME_PROPERTY.get(kind)
    if key is not None and key in properties:
        return resolver.resolve(properties[key])
    if kind == "AWS::S3::Bucket":
        return logical_id.lower()
    if kind == "AWS::SQS::Queue" and resolver.resolve(properties.get("FifoQueue")) in (
        True,
        "true",
    ):
        return f"{logical_id}.fifo"
    return logical_id


def ref(logical_id: str, resource: Mapping[str, object], resolver: Resolves) -> object:
    """What ``Ref LOGICAL_ID`` gives for one of the template's resources."""
    kind = resource_type(resource)
    name = physical_name(logical_id, resource, resolver)
    if not isinstance(name, str):
        return name
    stack = resolver.stack
    if kind in (*FUNCTION_TYPES, "AWS::S3::Bucket", "AWS::DynamoDB::Table"):
        return name
    if kind == "AWS::Serverless::SimpleTable":
        return name
    if kind == "AWS::SQS::Queue":
        return f"https://sqs.{stack.region}.amazonaws.com/{stack.account_id}/{name}"
    if kind == "AWS::SNS::Topic":
        return f"arn:aws:sns:{stack.region}:{stack.account_id}:{name}"
    if kind == "AWS::SecretsManager::Secret":
        return f"arn:aws:secretsmanager:{stack.region}:{stack.account_id}:secret:{name}"
    return Unresolved(
        f"Ref {logical_id}: the id of {kind or 'a resource'} exists only once deployed"
    )


def get_att(
    logical_id: str, resource: Mapping[str, object], attribute: str, resolver: Resolves
) -> object:
    """What ``Fn::GetAtt LOGICAL_ID.ATTRIBUTE`` gives, for attributes that follow from a name."""
    kind = resource_type(resource)
    name = physical_name(logical_id, resource, resolver)
    if not isinstance(name, str):
        return name
    region, account = resolver.stack.region, resolver.stack.account_id
    values: dict[str, str] = {}
    if kind in FUNCTION_TYPES:
        values = {"Arn": f"arn:aws:lambda:{region}:{account}:function:{name}"}
    elif kind == "AWS::SQS::Queue":
        values = {
            "Arn": f"arn:aws:sqs:{region}:{account}:{name}",
            "QueueName": name,
            "QueueUrl": f"https://sqs.{region}.amazonaws.com/{account}/{name}",
        }
    elif kind == "AWS::S3::Bucket":
        values = {"Arn": f"arn:aws:s3:::{name}"}
    elif kind in ("AWS::DynamoDB::Table", "AWS::Serverless::SimpleTable"):
        values = {"Arn": f"arn:aws:dynamodb:{region}:{account}:table/{name}"}
    elif kind == "AWS::SNS::Topic":
        values = {"TopicArn": f"arn:aws:sns:{region}:{account}:{name}", "TopicName": name}
    if attribute in values:
        return values[attribute]
    return Unresolved(
        f"Fn::GetAtt {logical_id}.{attribute} ({kind or 'a resource'}) is known only once deployed"
    )
