"""The read side of Lambda's management API, answered from the routing table: ListFunctions,
GetFunction, GetFunctionConfiguration, ListEventSourceMappings and GetEventSourceMapping, as
boto3's `lambda` client and `aws lambda … --endpoint-url` call them. Writes are refused with
an answer that says Functions and Triggers change through kubectl or GitOps.

The public app hands it every path under `/2015-03-31/` but the Invoke API's; the gateway
tells it of each new routing table (`observe`), which dates the specs that changed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import parse_qs, unquote

from kubelambda.api.function import Function
from kubelambda.api.identity import FunctionKey
from kubelambda.api.trigger import Trigger
from kubelambda.clock import Clock
from kubelambda.gateway.access import AccessKey, AccessKeys, authenticate
from kubelambda.gateway.exceptions import (
    AccessDenied,
    FunctionNotFound,
    InvalidParameter,
    MethodNotAllowed,
    NotFound,
    UnknownOperation,
)
from kubelambda.gateway.http import Request, Response
from kubelambda.gateway.ids import new_request_id
from kubelambda.gateway.routing import FunctionEntry, RoutingTable, parse_function_name
from kubelambda.gateway.settings import GatewaySettings
from kubelambda.gateway.sources.management_shapes import (
    JSON,
    CodeFacts,
    Identity,
    code_facts,
    event_source_arn,
    event_source_mapping,
    function_configuration,
    get_function,
    mapping_uuid,
)

__all__ = ["LAMBDA_API_PREFIX", "READ_ONLY", "ManagementApi"]

LAMBDA_API_PREFIX = "/2015-03-31/"
# Lambda's page sizes, whatever MaxItems asks (it may ask 1 to 10000).
_FUNCTIONS_PER_PAGE = 50
_MAPPINGS_PER_PAGE = 100
_MAX_ITEMS = 10_000
_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
READ_ONLY = (
    "kubelambda's Lambda API is read-only: Functions and Triggers are changed with "
    "kubectl apply (or through your GitOps repository), not through the Lambda API"
)
_SERVED = (
    "this gateway serves Invoke and, of the rest of the Lambda API, ListFunctions, "
    "GetFunction, GetFunctionConfiguration, ListEventSourceMappings and GetEventSourceMapping"
)
_JSON = (b"content-type", b"application/json")


@dataclass(frozen=True, slots=True)
class _Seen:
    """A Function's spec, when this gateway first saw it (LastModified), and its code's facts."""

    spec: Function | None
    since: float
    code: CodeFacts


class ManagementApi:
    """Serves the read calls of Lambda's management API and refuses its writes."""

    def __init__(
        self,
        *,
        routes: Callable[[], RoutingTable],
        clock: Clock,
        settings: GatewaySettings,
        access_keys: AccessKeys,
    ) -> None:
        self._routes = routes
        self._clock = clock
        self._settings = settings
        self._access_keys = access_keys
        self._identity = Identity(
            region=settings.region,
            account_id=settings.account_id,
            default_namespace=settings.default_namespace,
        )
        # When the Functions of the first table were last modified, as far as the gateway
        # knows, and when a Trigger without a creationTimestamp (a manifest file's) was made.
        self._started = clock.wall()
        self._history: dict[FunctionKey, _Seen] = {}
        self.observe(routes())

    def observe(self, table: RoutingTable) -> None:
        """Note the specs of a new routing table: a Function whose spec changed (or is new)
        was modified now, as far as this gateway can tell."""
        now = self._clock.wall()
        self._history = {key: self._seen(entry, now) for key, entry in table.functions.items()}

    def _seen(self, entry: FunctionEntry, now: float) -> _Seen:
        old = self._history.get(entry.key)
        # Identity first: an incremental table (tableupdates.py) keeps unchanged specs.
        if old is not None and (old.spec is entry.spec or old.spec == entry.spec):
            return old
        return _Seen(spec=entry.spec, since=now, code=code_facts(entry.spec))

    def _facts(self, entry: FunctionEntry) -> _Seen:
        # A table that arrived without `observe` (none does in the gateway) is dated now.
        seen = self._history[entry.key] = self._seen(entry, self._clock.wall())
        return seen

    async def __call__(self, request: Request) -> Response:
        request_id = request.request_id = new_request_id()
        if request.method in _WRITES:
            # Before the signature: this answer tells an unsigned caller nothing.
            raise AccessDenied(READ_ONLY, error_type="AccessDeniedException")
        if request.method != "GET":
            raise MethodNotAllowed(
                f"the Lambda API's read calls take GET, not {request.method}",
                allowed=frozenset({"GET"}),
            )
        operation, argument = _operation(request.raw_path)
        key = self._caller(request)
        query = {
            name: values[-1] for name, values in parse_qs(request.query.decode("latin-1")).items()
        }
        table = self._routes()
        if operation == "ListFunctions":
            body = self._list_functions(table, query, key)
        elif operation == "ListEventSourceMappings":
            body = self._list_mappings(table, query, key)
        elif operation == "GetEventSourceMapping":
            body = self._get_mapping(table, argument, key)
        else:
            body = self._get_function(table, operation, argument, query, key)
        return Response(
            status=200,
            headers=[_JSON, (b"x-amzn-requestid", request_id.encode("ascii"))],
            body=json.dumps(body, separators=(",", ":")).encode("utf-8"),
        )

    def _caller(self, request: Request) -> AccessKey | None:
        """The key that signed the request; None when the gateway asks for none (local mode)."""
        if not self._settings.invoke_auth:
            return None
        return authenticate(request, self._access_keys, now=self._clock.wall())

    def _allow(self, key: AccessKey | None, function: FunctionKey, action: str, arn: str) -> None:
        """AccessDenied unless `key` is granted `function` (checked before it is looked up, so
        a key learns nothing of functions outside its grants)."""
        if key is not None and not key.allows(function):
            raise AccessDenied(
                f"User: {key.id} is not authorized to perform: lambda:{action} on resource: "
                f"{arn} because no identity-based policy allows the lambda:{action} action",
                error_type="AccessDeniedException",
            )

    def _list_functions(
        self, table: RoutingTable, query: dict[str, str], key: AccessKey | None
    ) -> JSON:
        page = _page_size(query, _FUNCTIONS_PER_PAGE)
        version = query.get("FunctionVersion")
        if version is not None and version != "ALL":
            raise InvalidParameter(
                f"FunctionVersion {version!r}: the only value is ALL",
                error_type="ValidationException",
            )
        name = self._identity.function_name
        entries = sorted(
            (entry for k, entry in table.functions.items() if key is None or key.allows(k)),
            key=lambda entry: name(entry.key),
        )
        if "MasterRegion" in query:
            entries = []  # no Function is a Lambda@Edge replica
        marker = query.get("Marker")
        if marker:
            entries = [entry for entry in entries if name(entry.key) > marker]
        shown = entries[:page]
        answer: JSON = {"Functions": [self._configuration(entry, listed=True) for entry in shown]}
        if len(entries) > page:
            answer["NextMarker"] = name(shown[-1].key)
        return answer

    def _configuration(self, entry: FunctionEntry, *, listed: bool = False) -> JSON:
        seen = self._facts(entry)
        return function_configuration(
            entry, identity=self._identity, modified=seen.since, code=seen.code, listed=listed
        )

    def _get_function(
        self,
        table: RoutingTable,
        operation: str,
        name: str,
        query: dict[str, str],
        key: AccessKey | None,
    ) -> JSON:
        function = parse_function_name(
            name, qualifier=query.get("Qualifier"), default_namespace=table.default_namespace
        )
        arn = self._identity.function_arn(function)
        self._allow(key, function, operation, arn)
        entry = table.functions.get(function)
        if entry is None:
            raise FunctionNotFound(f"Function not found: {arn}")
        if operation == "GetFunctionConfiguration":
            return self._configuration(entry)
        seen = self._facts(entry)
        return get_function(entry, identity=self._identity, modified=seen.since, code=seen.code)

    def _list_mappings(
        self, table: RoutingTable, query: dict[str, str], key: AccessKey | None
    ) -> JSON:
        page = _page_size(query, _MAPPINGS_PER_PAGE)
        wanted: FunctionKey | None = None
        if name := query.get("FunctionName"):
            wanted = parse_function_name(
                name, qualifier=None, default_namespace=table.default_namespace
            )
            arn = self._identity.function_arn(wanted)
            self._allow(key, wanted, "ListEventSourceMappings", arn)
        source = query.get("EventSourceArn")
        triggers = []
        for trigger in table.event_sources:
            function = FunctionKey(trigger.namespace, trigger.function)
            if key is not None and not key.allows(function):
                continue
            if wanted is not None and function != wanted:
                continue
            if source is not None and event_source_arn(trigger, self._identity) != source:
                continue
            triggers.append(trigger)
        triggers.sort(key=_position)
        if marker := query.get("Marker"):
            triggers = [trigger for trigger in triggers if _position(trigger) > marker]
        shown = triggers[:page]
        answer: JSON = {"EventSourceMappings": [self._mapping(table, trigger) for trigger in shown]}
        if len(triggers) > page:
            answer["NextMarker"] = _position(shown[-1])
        return answer

    def _get_mapping(self, table: RoutingTable, mapping: str, key: AccessKey | None) -> JSON:
        trigger = next((t for t in table.event_sources if mapping_uuid(t) == mapping), None)
        if trigger is None:
            raise NotFound(f"The event source mapping {mapping} does not exist")
        function = FunctionKey(trigger.namespace, trigger.function)
        self._allow(key, function, "GetEventSourceMapping", self._identity.mapping_arn(mapping))
        return self._mapping(table, trigger)

    def _mapping(self, table: RoutingTable, trigger: Trigger) -> JSON:
        function = FunctionKey(trigger.namespace, trigger.function)
        return event_source_mapping(
            trigger,
            identity=self._identity,
            function_exists=function in table.functions,
            modified=self._created(trigger),
        )

    def _created(self, trigger: Trigger) -> float:
        """The Trigger's creationTimestamp; a manifest file's has none: the gateway's start."""
        try:
            return datetime.fromisoformat(trigger.created.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return self._started


def _operation(raw_path: str) -> tuple[str, str]:
    """The read call a GET path names, with its FunctionName or UUID ("" for the lists)."""
    parts = [unquote(part) for part in raw_path[len(LAMBDA_API_PREFIX) :].split("/")]
    if len(parts) > 1 and not parts[-1]:
        parts.pop()  # a trailing slash, as AWS's reference writes the list calls
    match parts:
        case ["functions"]:
            return "ListFunctions", ""
        case ["functions", name] if name:
            return "GetFunction", name
        case ["functions", name, "configuration"] if name:
            return "GetFunctionConfiguration", name
        case ["event-source-mappings"]:
            return "ListEventSourceMappings", ""
        case ["event-source-mappings", mapping] if mapping:
            return "GetEventSourceMapping", mapping
    raise UnknownOperation(f"GET {unquote(raw_path)}: {_SERVED}")


def _page_size(query: dict[str, str], most: int) -> int:
    """MaxItems (1 to 10000), capped at Lambda's page size for the call."""
    text = query.get("MaxItems")
    if text is None:
        return most
    try:
        asked = int(text)
    except ValueError:
        raise InvalidParameter(f"MaxItems {text!r} is not a whole number") from None
    if not 1 <= asked <= _MAX_ITEMS:
        raise InvalidParameter(
            f"1 validation error detected: Value '{asked}' at 'maxItems' failed to satisfy "
            f"constraint: Member must have value between 1 and {_MAX_ITEMS}",
            error_type="ValidationException",
        )
    return min(asked, most)


def _position(trigger: Trigger) -> str:
    # Mappings are listed in this order, and a page's NextMarker is its last one's.
    return f"{trigger.namespace}/{trigger.name}"
