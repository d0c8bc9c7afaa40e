"""Converts an AWS SAM template into Function and Trigger manifests plus a report of what did not
carry over. The one entry point of the package: ``kubelambda sam convert`` writes the result,
``kubelambda.api.manifests`` serves it in local mode.

Each converted object is checked with the models' own ``parse_function``/``parse_trigger``, so
what comes out is what ``kubectl apply`` and ``kubelambda local`` take.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from kubelambda.api.errors import SpecError
from kubelambda.api.function import LAMBDA_NAME, parse_function
from kubelambda.api.sam.code import CodeMode
from kubelambda.api.sam.events import EVENT_TYPES, event_trigger
from kubelambda.api.sam.functions import convert_function
from kubelambda.api.sam.http import HttpEvent, http_event, http_triggers, report_api
from kubelambda.api.sam.intrinsics import Resolver
from kubelambda.api.sam.layers import LAYER_TYPES
from kubelambda.api.sam.names import DNS_NAME_MAX, NameBook, dns_label
from kubelambda.api.sam.report import Report
from kubelambda.api.sam.resources import Stack, logical_ref, physical_name
from kubelambda.api.sam.scope import Scope, mapping
from kubelambda.api.sam.template import TemplateError, load_template
from kubelambda.api.trigger import parse_trigger

FUNCTION: Final = "AWS::Serverless::Function"
_APIS: Final = {"AWS::Serverless::Api": "Api", "AWS::Serverless::HttpApi": "HttpApi"}
_IGNORED_TYPES: Final = {
    "AWS::IAM::Role": "IAM has no meaning here",
    "AWS::IAM::Policy": "IAM has no meaning here",
    "AWS::IAM::ManagedPolicy": "IAM has no meaning here",
    "AWS::Lambda::Permission": "who may invoke is the Invoke API's access keys and the Triggers",
    "AWS::Logs::LogGroup": "logs go to the pods' output",
    "AWS::CloudWatch::Alarm": "no CloudWatch: alert on the Prometheus metrics",
}
_RESOURCE_ATTRIBUTES: Final = ("DependsOn", "DeletionPolicy", "UpdateReplacePolicy", "UpdatePolicy")
_SECTIONS: Final = {
    "Outputs": "outputs are not converted",
    "Description": "descriptive only",
    "Metadata": "descriptive only",
    "AWSTemplateFormatVersion": "",
    "Transform": "",
    "Parameters": "",
    "Mappings": "",
    "Conditions": "",
    "Resources": "",
    "Globals": "",
}


@dataclass(frozen=True, kw_only=True)
class SamOptions:
    """How to convert: parameter ``overrides``, the ``stack`` the pseudo parameters describe,
    ``code`` inline (for a cluster) or as a path (for local mode), and a ``namespace``."""

    overrides: Mapping[str, str] = field(default_factory=dict)
    stack: Stack = field(default_factory=Stack)
    code: CodeMode = "inline"
    namespace: str | None = None


@dataclass(frozen=True, kw_only=True)
class Conversion:
    """The manifests (Functions, then Triggers) and what did not carry over."""

    objects: list[dict[str, object]]
    report: Report


def convert_file(path: Path, options: SamOptions) -> Conversion:
    """Convert the SAM template at ``path``; raises TemplateError when it cannot be read."""
    return convert_template(load_template(path), template_dir=path.parent, options=options)


def convert_template(
    template: Mapping[str, object], *, template_dir: Path, options: SamOptions
) -> Conversion:
    """Convert a parsed SAM template; ``template_dir`` is where CodeUri paths start. Raises
    TemplateError when it has no Resources or the overrides do not fit its Parameters."""
    if not isinstance(template.get("Resources"), Mapping):
        raise TemplateError("the template's Resources must map logical ids to resources")
    report = Report()
    scope = Scope(
        report=report,
        resolver=Resolver(template, overrides=options.overrides, stack=options.stack),
        template_dir=template_dir.resolve(),
        code_mode=options.code,
        namespace=options.namespace,
    )
    for section in template:
        message = _SECTIONS.get(section, "not a section kubelambda knows")
        if message:
            report.ignored(section, "", message)
    globals_ = mapping(template.get("Globals"))
    for section, props in globals_.items():
        if section in ("Api", "HttpApi"):
            report_api(scope, f"Globals.{section}", mapping(props))
        elif section != "Function":
            report.not_mapped(f"Globals.{section}", "", "not converted")
    resources = {k: v for k, v in scope.resolver.resources.items() if _exists(scope, k, v)}
    _name_functions(scope, resources)
    functions: list[dict[str, object]] = []
    triggers: list[dict[str, object]] = []
    routes: list[HttpEvent] = []
    names = NameBook(limit=DNS_NAME_MAX)
    for logical_id in scope.functions:
        own = mapping(mapping(resources[logical_id]).get("Properties"))
        raw = mapping(_merge(mapping(globals_.get("Function")), own))
        props = mapping(scope.resolver.resolve(raw))
        manifest = convert_function(scope, logical_id, props)
        if manifest is None:
            for event in mapping(props.get("Events")):
                report.not_mapped(logical_id, f"Events.{event}", "its function is not converted")
            continue
        functions.append(manifest)
        made, found = _convert_events(scope, logical_id, props, raw, globals_, names)
        triggers += made
        routes += found
    if routes:
        triggers = http_triggers(scope, routes, names) + triggers
        report.note(
            "Events",
            "",
            "an HTTP Trigger routes its path and every path below it, where"
            " API Gateway matches whole routes",
        )
    _report_other_resources(scope, resources)
    return Conversion(objects=_checked(scope, functions, triggers), report=report)


def _convert_events(
    scope: Scope,
    logical_id: str,
    props: Mapping[str, object],
    raw: Mapping[str, object],
    globals_: Mapping[str, object],
    names: NameBook,
) -> tuple[list[dict[str, object]], list[HttpEvent]]:
    """A function's Triggers other than HTTP ones, and its HTTP routes (made into Triggers once
    every function's are known, since routes of different functions may meet)."""
    triggers: list[dict[str, object]] = []
    routes: list[HttpEvent] = []
    function = scope.functions[logical_id]
    for event, definition in mapping(props.get("Events")).items():
        kind = str(mapping(definition).get("Type", ""))
        event_props = mapping(mapping(definition).get("Properties"))
        # Before resolution, where !Ref and !GetAtt still name the API, bucket or queue.
        raw_props = mapping(mapping(mapping(raw.get("Events")).get(event)).get("Properties"))
        if kind in _APIS.values():
            api = _api_auth(scope, kind, raw_props, globals_)
            route = http_event(
                scope, resource=logical_id, event=event, kind=kind, props=event_props, api=api
            )
            if route is not None:
                routes.append(route)
        elif kind in EVENT_TYPES:
            spec = event_trigger(
                scope, resource=logical_id, event=event, kind=kind, props=event_props, raw=raw_props
            )
            if spec is not None:
                name = names.take(dns_label(f"{function}-{event}", limit=DNS_NAME_MAX))
                triggers.append(scope.manifest("Trigger", name, {"function": function, **spec}))
        else:
            scope.report.not_mapped(
                logical_id,
                f"Events.{event}",
                f"{kind or 'untyped'} events are not mapped (Api, HttpApi, S3, Schedule,"
                " ScheduleV2, SQS and SelfManagedKafka are)",
            )
    return triggers, routes


def _exists(scope: Scope, logical_id: str, resource: object) -> bool:
    """Whether the resource would be created: its Condition, if any, holds."""
    condition = mapping(resource).get("Condition")
    if condition is None:
        return True
    truth = scope.resolver.condition(str(condition))
    if truth is True:
        return True
    if truth is False:
        scope.report.ignored(logical_id, "Condition", f"{condition} is false: not created")
        return False
    scope.report.not_mapped(logical_id, "Condition", f"{truth.reason}: converted as if true")
    return True


def _name_functions(scope: Scope, resources: Mapping[str, object]) -> None:
    """Give every function its Lambda name (FunctionName, else the logical id) and a unique
    Function name made from it."""
    book = NameBook()
    for logical_id, resource in resources.items():
        if mapping(resource).get("Type") != FUNCTION:
            continue
        name = physical_name(logical_id, mapping(resource), scope.resolver)
        if not (isinstance(name, str) and re.fullmatch(LAMBDA_NAME, name)):
            scope.report.not_mapped(
                logical_id,
                "FunctionName",
                f"{name!r} is not a Lambda name known before deploying: the logical id is used",
            )
            name = logical_id
        function = book.take(dns_label(name))
        scope.functions[logical_id] = function
        scope.lambda_name_of[logical_id] = name
        scope.lambda_names[name] = function


def _merge(global_value: object, local_value: object) -> object:
    """SAM's Globals merge: maps merge key by key, lists concatenate (globals first), anything
    else (intrinsic functions included) is replaced by the resource's own value."""
    if _is_map(global_value) and _is_map(local_value):
        merged = dict(global_value)  # type: ignore[call-overload]
        for key, value in mapping(local_value).items():
            merged[key] = _merge(merged[key], value) if key in merged else value
        return merged
    if isinstance(global_value, list) and isinstance(local_value, list):
        return global_value + local_value
    return local_value


def _is_map(value: object) -> bool:
    if not isinstance(value, Mapping):
        return False
    keys = list(value)
    return not (len(keys) == 1 and (keys[0] == "Ref" or str(keys[0]).startswith("Fn::")))


def _api_auth(
    scope: Scope, kind: str, raw_props: Mapping[str, object], globals_: Mapping[str, object]
) -> Mapping[str, object]:
    """The Auth of the API an event belongs to (its ApiId/RestApiId, else the implicit one),
    with Globals merged in and intrinsics resolved."""
    api_id = logical_ref(raw_props.get("ApiId" if kind == "HttpApi" else "RestApiId"))
    own = mapping(mapping(scope.resolver.resources.get(api_id or "")).get("Properties"))
    merged = _merge(mapping(globals_.get(kind)), own)
    return mapping(mapping(scope.resolver.resolve(merged)).get("Auth"))


def _report_other_resources(scope: Scope, resources: Mapping[str, object]) -> None:
    report = scope.report
    for logical_id, resource in resources.items():
        kind = str(mapping(resource).get("Type", ""))
        for attribute in _RESOURCE_ATTRIBUTES:
            if attribute in mapping(resource):
                report.ignored(logical_id, attribute, "CloudFormation's deployment order/policy")
        if "Metadata" in mapping(resource):
            report.ignored(
                logical_id, "Metadata", "sam build's settings: the CodeUri folder is used as it is"
            )
        if kind == FUNCTION:
            continue
        if kind in _APIS:
            report_api(scope, logical_id, mapping(mapping(resource).get("Properties")))
        elif logical_id in scope.used and kind in LAYER_TYPES:
            report.ignored(logical_id, "", f"{kind}: a function's spec.layers carries its zip")
        elif logical_id in scope.used:
            report.ignored(logical_id, "", f"{kind}: an event stands for it (see the notes)")
        elif kind in _IGNORED_TYPES:
            report.ignored(logical_id, "", _IGNORED_TYPES[kind])
        elif kind in LAYER_TYPES:
            report.not_mapped(
                logical_id,
                "",
                "no function's Layers maps it (only a layer whose zip is on S3, ContentUri"
                " s3://bucket/key, becomes spec.layers): upload the zip, or put its files into"
                " the functions' code",
            )
        else:
            report.not_mapped(
                logical_id,
                "",
                f"{kind or 'a resource'} is not converted:"
                " kubelambda converts functions and their events; create it"
                " another way",
            )


def _checked(
    scope: Scope, functions: list[dict[str, object]], triggers: list[dict[str, object]]
) -> list[dict[str, object]]:
    """The objects the models accept (the others reported), Triggers of dropped Functions
    left out."""
    kept: list[dict[str, object]] = []
    manifest_dir = scope.template_dir if scope.code_mode == "path" else None
    names = set()
    for function in functions:
        try:
            parsed = parse_function(function, manifest_dir=manifest_dir)
        except SpecError as error:
            name = mapping(function.get("metadata")).get("name")
            resource = next((k for k, v in scope.functions.items() if v == name), str(name))
            scope.report.not_mapped(resource, "", f"the converted Function is refused: {error}")
            continue
        names.add(parsed.name)
        kept.append(function)
    for trigger in triggers:
        name = mapping(trigger.get("metadata")).get("name")
        target = mapping(trigger.get("spec")).get("function")
        if target not in names:
            scope.report.not_mapped(str(name), "", f"its Function {target} is not converted")
            continue
        try:
            parse_trigger(trigger)
        except SpecError as error:
            scope.report.not_mapped(str(name), "", f"the converted Trigger is refused: {error}")
            continue
        kept.append(trigger)
    return kept
