"""SAM's Api and HttpApi events as HTTP Triggers: API Gateway's route (path, method) becomes a
path prefix and methods, an HttpApi JWT authorizer becomes ``auth.jwt``; what API Gateway would
do differently (path parameters, payload 1.0, other authorizers) is reported.

convert.py calls ``http_event`` for each event, then ``http_triggers`` once for all of them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from kubelambda.api.errors import SpecError
from kubelambda.api.patterns import HTTP_METHODS, HTTP_PATH, IDENTITY_SOURCE, SCOPE, URL
from kubelambda.api.routes import route_conflicts
from kubelambda.api.sam.names import DNS_NAME_MAX, NameBook, dns_label
from kubelambda.api.sam.scope import Scope, mapping
from kubelambda.api.trigger import RESERVED_PATH_PREFIXES, Trigger, parse_trigger

_ANY: Final = frozenset({"ANY", "*", "X-AMAZON-APIGATEWAY-ANY-METHOD"})
# API resource properties that change nothing here, and why.
API_IGNORED: Final = {
    "Name": "descriptive only",
    "Description": "descriptive only",
    "Tags": "AWS resource tags",
    "StageName": "routes are served at the gateway's root, without a stage in the path",
    "OpenApiVersion": "no OpenAPI document is made",
    "PropagateTags": "AWS resource tags",
}
_EVENT_KEYS: Final = {
    "Api": frozenset({"Path", "Method", "RestApiId", "Auth"}),
    "HttpApi": frozenset({"Path", "Method", "ApiId", "Auth", "PayloadFormatVersion"}),
}


@dataclass(kw_only=True)
class HttpEvent:
    """One Api or HttpApi event of ``resource`` (a function's logical id), read as a route."""

    resource: str
    event: str
    function: str
    path: str
    methods: set[str]
    auth: dict[str, object]
    # (resource, event) of every event merged into this route.
    sources: list[tuple[str, str]] = field(default_factory=list)


def http_event(
    scope: Scope,
    *,
    resource: str,
    event: str,
    kind: str,
    props: Mapping[str, object],
    api: Mapping[str, object],
) -> HttpEvent | None:
    """The route of one Api/HttpApi event, or None (reported); ``api`` is the Auth of the API
    it belongs to, Globals merged."""
    report = scope.report
    at = f"Events.{event}.Properties"
    for key in props:
        if key not in _EVENT_KEYS[kind]:
            report.not_mapped(resource, f"{at}.{key}", "not mapped to an HTTP Trigger")
    path_value, method_value = props.get("Path"), props.get("Method")
    if kind == "HttpApi" and path_value is None and method_value is None:
        path, methods = "/", {"ANY"}  # the $default route: whatever no other route takes
    else:
        found = _path(scope, resource, f"{at}.Path", path_value)
        method = scope.text(resource, f"{at}.Method", method_value)
        if found is None or method is None:
            return None
        path = found
        upper = method.upper()
        if upper in _ANY:
            methods = {"ANY"}
        elif upper in HTTP_METHODS:
            methods = {upper}
        else:
            report.not_mapped(resource, f"{at}.Method", f"{method} is not a method routes take")
            return None
    if kind == "Api":
        report.not_mapped(
            resource,
            event,
            "an Api (REST API) event gets payload 1.0; an HTTP Trigger sends API Gateway's HTTP"
            " API payload 2.0 (requestContext.http.method and rawPath, not httpMethod and path)",
        )
        auth = _rest_auth(scope, resource, f"{at}.Auth", mapping(props.get("Auth")), api)
    else:
        version = props.get("PayloadFormatVersion")
        if (
            version is not None
            and scope.text(resource, f"{at}.PayloadFormatVersion", version) != "2.0"
        ):
            report.not_mapped(
                resource, f"{at}.PayloadFormatVersion", "HTTP Triggers send payload 2.0 only"
            )
        auth = _jwt_auth(scope, resource, f"{at}.Auth", mapping(props.get("Auth")), api)
    if auth is None:
        return None
    return HttpEvent(
        resource=resource,
        event=event,
        function=scope.functions[resource],
        path=path,
        methods=methods,
        auth=auth,
        sources=[(resource, event)],
    )


def _path(scope: Scope, resource: str, prop: str, value: object) -> str | None:
    path = scope.text(resource, prop, value)
    if path is None:
        if value is None:
            scope.report.not_mapped(resource, prop, "is required")
        return None
    segments = path.split("/")
    # API Gateway's {param} and {proxy+} segments: the route becomes the prefix before them.
    first_parameter = next((i for i, s in enumerate(segments) if "{" in s), None)
    prefix = "/".join(segments[:first_parameter]).rstrip("/") or "/"
    if prefix != path.rstrip("/") and path != "/":
        scope.report.not_mapped(
            resource,
            prop,
            f"{path}: routed as the prefix {prefix} (every path below it); path parameters are"
            " not matched, and the event has no pathParameters (read them from rawPath)",
        )
    if not prefix.startswith("/") or re.fullmatch(HTTP_PATH, prefix) is None:
        scope.report.not_mapped(resource, prop, f"{path} is not a path an HTTP Trigger takes")
        return None
    if prefix.startswith(RESERVED_PATH_PREFIXES):
        scope.report.not_mapped(resource, prop, f"{path}: the gateway keeps this path for itself")
        return None
    return prefix


def _rest_auth(
    scope: Scope,
    resource: str,
    prop: str,
    auth: Mapping[str, object],
    api: Mapping[str, object],
) -> dict[str, object] | None:
    """A REST API route's auth: only none maps (its authorizers and API keys do not)."""
    name = auth.get("Authorizer", api.get("DefaultAuthorizer"))
    api_key = auth.get("ApiKeyRequired", api.get("ApiKeyRequired"))
    if name not in (None, "NONE"):
        scope.report.not_mapped(
            resource,
            prop,
            f"REST API authorizer {name} is not mapped (HTTP Triggers take API keys or JWTs):"
            " no Trigger is made rather than an open route",
        )
        return None
    if scope.flag(resource, f"{prop}.ApiKeyRequired", api_key, default=False):
        scope.report.not_mapped(
            resource,
            f"{prop}.ApiKeyRequired",
            "API Gateway's API keys are not mapped: no Trigger is made rather than an open route"
            " (add spec.http.auth type apiKey with a Secret by hand)",
        )
        return None
    for key in auth:
        if key not in ("Authorizer", "ApiKeyRequired"):
            scope.report.not_mapped(resource, f"{prop}.{key}", "not mapped")
    return {"type": "none"}


def _jwt_auth(
    scope: Scope,
    resource: str,
    prop: str,
    auth: Mapping[str, object],
    api: Mapping[str, object],
) -> dict[str, object] | None:
    """An HttpApi route's auth: none, or its JWT authorizer as ``auth.jwt``."""
    report = scope.report
    name = auth.get("Authorizer", api.get("DefaultAuthorizer"))
    if name in (None, "NONE"):
        return {"type": "none"}
    authorizer = mapping(mapping(api.get("Authorizers")).get(str(name)))
    config = mapping(authorizer.get("JwtConfiguration"))
    if not config:
        kind = "IAM" if name == "AWS_IAM" else "Lambda" if "FunctionArn" in authorizer else "this"
        report.not_mapped(
            resource,
            prop,
            f"{kind} authorizer {name} is not mapped (only JWT authorizers are): no Trigger is"
            " made rather than an open route",
        )
        return None
    issuer = scope.text(resource, f"{prop} (authorizer {name} issuer)", config.get("issuer"))
    audience = config.get("audience")
    audience = [audience] if isinstance(audience, str) else audience
    scopes = auth.get("AuthorizationScopes", authorizer.get("AuthorizationScopes"))
    source = authorizer.get("IdentitySource")
    jwt: dict[str, object] = {}
    problems = []
    if issuer is None or re.fullmatch(URL, issuer) is None:
        problems.append(f"issuer {issuer!r} is not an http(s) URL")
    if not (isinstance(audience, list) and audience and all(isinstance(a, str) for a in audience)):
        problems.append(f"audience {audience!r} is not a list of strings")
    if scopes is not None and not (
        isinstance(scopes, list)
        and all(isinstance(s, str) and re.fullmatch(SCOPE, s) for s in scopes)
    ):
        problems.append(f"authorization scopes {scopes!r} are not a list of scope names")
    if source is not None and not (
        isinstance(source, str) and re.fullmatch(IDENTITY_SOURCE, source)
    ):
        problems.append(
            f"identity source {source!r} is not $request.header.NAME or $request.querystring.NAME"
        )
    if problems or not scope.plain(resource, prop, [issuer, audience, scopes, source]):
        if problems:
            report.not_mapped(
                resource, prop, f"JWT authorizer {name}: {'; '.join(problems)}: no Trigger is made"
            )
        return None
    jwt = {"issuer": issuer, "audience": audience}
    if scopes:
        jwt["scopes"] = scopes
    if source is not None:
        jwt["identitySource"] = source
    return {"type": "jwt", "jwt": jwt}


def http_triggers(
    scope: Scope, events: list[HttpEvent], names: NameBook
) -> list[dict[str, object]]:
    """One HTTP Trigger per function, path and auth (the events' methods merged); a route another
    function's Trigger holds already is left out and reported."""
    merged: dict[tuple[str, str, str], HttpEvent] = {}
    for event in events:
        key = (event.function, event.path, json.dumps(event.auth, sort_keys=True))
        held = merged.get(key)
        if held is None:
            merged[key] = event
        else:
            held.methods |= event.methods
            held.sources += event.sources
    built: list[tuple[HttpEvent, dict[str, object], Trigger]] = []
    for event in merged.values():
        methods = ["ANY"] if "ANY" in event.methods else sorted(event.methods)
        name = names.take(dns_label(f"{event.function}-{event.event}", limit=DNS_NAME_MAX))
        spec: dict[str, object] = {
            "function": event.function,
            "http": {"path": event.path, "methods": methods, "auth": event.auth},
        }
        manifest = scope.manifest("Trigger", name, spec)
        try:
            built.append((event, manifest, parse_trigger(manifest)))
        except SpecError as error:
            for source, event_id in event.sources:
                scope.report.not_mapped(source, f"Events.{event_id}", f"no Trigger: {error}")
    refused = {
        (c.trigger.namespace, c.trigger.name): c for c in route_conflicts(t for *_, t in built)
    }
    kept = []
    for event, manifest, trigger in built:
        conflict = refused.get((trigger.namespace, trigger.name))
        if conflict is None:
            kept.append(manifest)
            continue
        for source, event_id in event.sources:
            scope.report.not_mapped(source, f"Events.{event_id}", f"no Trigger: {conflict.message}")
    return kept


def report_api(scope: Scope, resource: str, props: Mapping[str, object]) -> None:
    """Report what an Api/HttpApi resource (or Globals' Api/HttpApi) sets beyond its Auth."""
    for key in props:
        if key in API_IGNORED:
            scope.report.ignored(resource, key, API_IGNORED[key])
        elif key == "Auth":
            for sub in mapping(props[key]):
                if sub not in ("Authorizers", "DefaultAuthorizer", "ApiKeyRequired"):
                    scope.report.not_mapped(resource, f"Auth.{sub}", "not mapped")
        else:
            scope.report.not_mapped(
                resource, key, "not mapped: HTTP Triggers carry a route's path, methods and auth"
            )
