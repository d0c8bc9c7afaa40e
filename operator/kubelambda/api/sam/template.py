"""Reads an AWS SAM template (YAML with CloudFormation's short-form tags, or JSON) into plain
data, intrinsic functions in their long form ({"Fn::Sub": ...}).

``load_template`` is called by ``convert`` and by ``kubelambda.api.manifests`` (which first asks
``mentions_transform`` whether a file might be a template at all).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, cast

import yaml

from kubelambda.api.strictyaml import StrictLoader

SAM_TRANSFORM: Final = "AWS::Serverless-2016-10-31"

# Short-form tags and the long form each stands for (CloudFormation's template reference).
_FUNCTIONS: Final = {
    "!Ref": "Ref",
    "!Condition": "Condition",
    "!Sub": "Fn::Sub",
    "!GetAtt": "Fn::GetAtt",
    "!Join": "Fn::Join",
    "!Select": "Fn::Select",
    "!Split": "Fn::Split",
    "!FindInMap": "Fn::FindInMap",
    "!If": "Fn::If",
    "!Equals": "Fn::Equals",
    "!Not": "Fn::Not",
    "!And": "Fn::And",
    "!Or": "Fn::Or",
    "!Base64": "Fn::Base64",
    "!Cidr": "Fn::Cidr",
    "!GetAZs": "Fn::GetAZs",
    "!ImportValue": "Fn::ImportValue",
    "!Transform": "Fn::Transform",
    "!ToJsonString": "Fn::ToJsonString",
    "!Length": "Fn::Length",
}


class TemplateError(ValueError):
    """A file that cannot be converted at all: unreadable, not YAML or JSON, not a SAM template,
    or parameter overrides that do not fit it. Names the file and the problem."""


@dataclass(frozen=True)
class UnknownTag:
    """A YAML tag that is not one of CloudFormation's functions: kept, and reported where used."""

    tag: str
    value: object


class _TemplateLoader(StrictLoader):
    """StrictLoader with CloudFormation's tags: a key repeated in one mapping is refused (as
    CloudFormation does) rather than silently replaced."""


def _construct_value(loader: yaml.SafeLoader, node: yaml.Node) -> object:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_mapping(cast(yaml.MappingNode, node), deep=True)


def _construct_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> object:
    tag = "!" + suffix
    value = _construct_value(loader, node)
    name = _FUNCTIONS.get(tag)
    if name is None:
        return UnknownTag(tag, value)
    if name == "Fn::GetAtt" and isinstance(value, str):
        # !GetAtt Resource.Attribute: the attribute may itself hold dots (Endpoint.Address).
        resource, _, attribute = value.partition(".")
        return {name: [resource, attribute]}
    return {name: value}


def _construct_timestamp(loader: yaml.SafeLoader, node: yaml.Node) -> object:
    # CloudFormation reads 2024-01-01 as text (a StartDate, a policy Version), not a date.
    return loader.construct_scalar(cast(yaml.ScalarNode, node))


_TemplateLoader.add_multi_constructor("!", _construct_tag)
_TemplateLoader.add_constructor("tag:yaml.org,2002:timestamp", _construct_timestamp)


def mentions_transform(text: str) -> bool:
    """Whether ``text`` may be a SAM template: a cheap test before parsing it as one."""
    return SAM_TRANSFORM in text


def is_sam_template(document: object) -> bool:
    """Whether a parsed document declares SAM's transform (alone or in a list)."""
    if not isinstance(document, Mapping):
        return False
    transform = document.get("Transform")
    names = transform if isinstance(transform, list) else [transform]
    return SAM_TRANSFORM in names


def read_document(text: str, *, source: str) -> object:
    """The document in ``text`` (YAML with CloudFormation's tags, or JSON); ``source`` names it
    in errors."""
    try:
        if text.lstrip().startswith("{"):
            return json.loads(text)
        return yaml.load(text, Loader=_TemplateLoader)  # a SafeLoader: no Python objects
    except json.JSONDecodeError as error:
        raise TemplateError(
            f"{source} is not valid JSON at line {error.lineno}, column {error.colno}: {error.msg}"
        ) from None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise TemplateError(
            f"{source} is not valid YAML{where}: {error.problem or error.context}"
        ) from None
    except yaml.YAMLError as error:
        raise TemplateError(f"{source} is not valid YAML: {error}") from None


def parse_template(text: str, *, source: str) -> dict[str, object]:
    """The SAM template in ``text``; raises TemplateError when it is not one."""
    document = read_document(text, source=source)
    if not isinstance(document, dict) or not is_sam_template(document):
        raise TemplateError(
            f"{source} is not an AWS SAM template: it has no 'Transform: {SAM_TRANSFORM}'"
        )
    return document


def load_template(path: Path) -> dict[str, object]:
    """The SAM template in the file at ``path``; raises TemplateError."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise TemplateError(f"{path} cannot be read: {error}") from None
    return parse_template(text, source=str(path))
