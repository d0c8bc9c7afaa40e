"""The Lambda management API's read calls (sources/management.py, management_shapes.py): every
answer checked against AWS's own model of the API (botocore's service description, which
botocore itself never checks answers against), paging, grants, and the refusal of writes."""

from __future__ import annotations

import base64
import json
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import botocore.session
import pytest
import yaml
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.model import Shape

from kubelambda.api import parse_function, parse_trigger
from kubelambda.api.function import Function
from kubelambda.api.identity import FunctionKey
from kubelambda.clock import FakeClock
from kubelambda.controller.resources.code import code_hash
from kubelambda.gateway.access import AccessKey, StaticAccessKeys
from kubelambda.gateway.exceptions import GatewayError
from kubelambda.gateway.http import Request, Response
from kubelambda.gateway.routing import FunctionEntry, RoutingTable, routing_table
from kubelambda.gateway.settings import GatewaySettings
from kubelambda.gateway.sources.management import READ_ONLY, ManagementApi
from kubelambda.gateway.sources.management_shapes import code_facts, mapping_uuid
from unit.gateway.serving import HELLO, StartGateway

pytestmark = pytest.mark.anyio

LAMBDA = botocore.session.get_session().get_service_model("lambda")
KEY, SECRET = "AKIAKUBELAMBDATEST01", "s3cr3t/with+chars"
START = 1_700_000_000.0

MANIFESTS = """
apiVersion: kubelambda.dev/v1alpha1
kind: Function
metadata: {name: hello}
spec:
  runtime: python3.12
  handler: app.handler
  code: {inline: {files: {app.py: "def handler(e, c): return e", lib/util.py: "X = 1"}}}
  memoryMB: 256
  timeoutSeconds: 20
  concurrency: 4
  reservedConcurrency: 10
  scaling: {maxReplicas: 3}
  env:
    - {name: GREETING, value: hello}
    - {name: EMPTY}
    - {name: PASSWORD, valueFrom: {secretKeyRef: {name: db, key: password}}}
    - {name: MODE, valueFrom: {configMapKeyRef: {name: settings, key: mode}}}
    - {name: POD, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
    - {name: LIMIT, valueFrom: {resourceFieldRef: {resource: limits.memory}}}
---
apiVersion: kubelambda.dev/v1alpha1
kind: Function
metadata: {name: worker, namespace: team-a}
spec: {image: registry.example.com/worker:1}
---
apiVersion: kubelambda.dev/v1alpha1
kind: Function
metadata: {name: shared, namespace: team-a}
spec: {runtime: python3.12, handler: app.handler, code: {configMapRef: {name: shared-code}}}
---
apiVersion: kubelambda.dev/v1alpha1
kind: Trigger
metadata: {name: orders, namespace: team-a, creationTimestamp: "2024-05-01T10:00:00Z"}
spec:
  function: worker
  queue:
    stream: ORDERS
    batchSize: 50
    maximumBatchingWindowSeconds: 2
    startingPosition: AT_TIMESTAMP
    startingPositionTimestamp: "2024-05-01T00:00:00Z"
    maximumConcurrency: 5
    functionResponseTypes: [ReportBatchItemFailures]
    filterCriteria: {filters: [{pattern: '{"body": {"kind": ["order"]}}'}]}
  delivery: {onFailure: {function: failures}}
---
apiVersion: kubelambda.dev/v1alpha1
kind: Trigger
metadata: {name: clicks}
spec:
  function: hello
  kafka:
    bootstrapServers: ["kafka-0:9092", "kafka-1:9092"]
    topics: [clicks, views]
    startingPosition: LATEST
    maximumRetryAttempts: 3
---
apiVersion: kubelambda.dev/v1alpha1
kind: Trigger
metadata: {name: orphan, namespace: team-b}
spec: {function: gone, queue: {stream: LOST}}
---
apiVersion: kubelambda.dev/v1alpha1
kind: Trigger
metadata: {name: web}
spec: {function: hello, http: {path: /hello, auth: {type: none}}}
"""


def table(manifests: str = MANIFESTS) -> RoutingTable:
    documents = [d for d in yaml.safe_load_all(manifests) if d]
    functions = [parse_function(d) for d in documents if d["kind"] == "Function"]
    triggers = [parse_trigger(d) for d in documents if d["kind"] == "Trigger"]
    return routing_table(functions, triggers)


def conforms(value: Any, shape: Shape, at: str = "") -> list[str]:
    """How `value` (decoded JSON) departs from `shape` of AWS's model of the Lambda API: an
    unknown field, a missing required one, a wrong type, a value outside an enum, a range or
    a pattern. Timestamps are seconds since the epoch, as rest-json carries them."""
    kind = shape.type_name
    where = at or shape.name
    if kind == "structure":
        if not isinstance(value, dict):
            return [f"{where}: {value!r} is not an object"]
        problems = [
            f"{where}.{name}: missing, and {shape.name} requires it"
            for name in shape.required_members
            if name not in value
        ]
        for name, item in value.items():
            member = shape.members.get(name)
            if member is None:
                problems.append(f"{where}.{name}: {shape.name} has no such field")
            else:
                problems += conforms(item, member, f"{where}.{name}")
        return problems
    if kind == "list":
        if not isinstance(value, list):
            return [f"{where}: {value!r} is not a list"]
        return [
            p for i, item in enumerate(value) for p in conforms(item, shape.member, f"{where}[{i}]")
        ]
    if kind == "map":
        if not isinstance(value, dict):
            return [f"{where}: {value!r} is not an object"]
        return [
            p
            for name, item in value.items()
            for p in conforms(name, shape.key, f"{where} key")
            + conforms(item, shape.value, f"{where}.{name}")
        ]
    checks: dict[str, tuple[type | tuple[type, ...], ...]] = {
        "string": (str,),
        "integer": (int,),
        "long": (int,),
        "boolean": (bool,),
        "timestamp": ((int, float),),
        "double": ((int, float),),
    }
    expected = checks[kind][0]
    if not isinstance(value, expected) or (kind != "boolean" and isinstance(value, bool)):
        return [f"{where}: {value!r} is not a {kind} ({shape.name})"]
    problems = []
    metadata = shape.metadata
    if kind == "string":
        if shape.enum and value not in shape.enum:
            problems.append(f"{where}: {value!r} is not one of {shape.name}'s values")
        if "pattern" in metadata and not re.fullmatch(_python(metadata["pattern"]), value):
            problems.append(f"{where}: {value!r} does not match {metadata['pattern']}")
        if len(value) < metadata.get("min", 0) or len(value) > metadata.get("max", len(value)):
            problems.append(f"{where}: {value!r} is not of the length {shape.name} allows")
    elif kind in ("integer", "long") and not (
        metadata.get("min", value) <= value <= metadata.get("max", value)
    ):
        problems.append(f"{where}: {value} is outside {shape.name}'s range")
    return problems


# The one known departure: a function outside the default namespace is NAMESPACE.NAME
# (docs/contracts.md), and the FunctionArn of AWS's event source mappings allows no dot
# (FunctionConfiguration's NameSpacedFunctionArn does). Clients do not check answers' patterns.
_NAMESPACED_ARN = re.compile(
    r"\.FunctionArn: '[^']*:function:[a-z0-9-]+\.[a-z0-9-]+' does not match"
)


def departures(value: Any, shape: Shape) -> list[str]:
    """`conforms`, less the known departure."""
    return [problem for problem in conforms(value, shape) if not _NAMESPACED_ARN.search(problem)]


def _python(pattern: str) -> str:
    # AWS writes Java regular expressions; only the tags' Unicode classes differ from Python's
    # (letters and numbers are in \w, separators in \s).
    return pattern.replace(r"\p{L}", r"\w").replace(r"\p{N}", r"\w").replace(r"\p{Z}", r"\s")


def output(operation: str) -> Shape:
    shape = LAMBDA.operation_model(operation).output_shape
    assert shape is not None
    return shape


def management(
    routes: RoutingTable, *, auth: bool = False, clock: FakeClock | None = None
) -> ManagementApi:
    return ManagementApi(
        routes=lambda: routes,
        # A signature is checked against the clock: signed calls need the real time.
        clock=clock or FakeClock(wall=time.time() if auth else START),
        settings=GatewaySettings(invoke_auth=auth),
        access_keys=StaticAccessKeys(
            [
                AccessKey(id=KEY, secret=SECRET, grants=("default/*",)),
                AccessKey(id="AKIAEVERYTHING000001", secret=SECRET, grants=("*/*",)),
            ]
        ),
    )


async def call(
    api: ManagementApi, path: str, *, method: str = "GET", query: str = "", key: str | None = None
) -> Any:
    """Call `api` as botocore sends (signed with `key`, when given); the answer's JSON."""
    headers = [(b"host", b"127.0.0.1:8080")]
    if key is not None:
        url = f"http://127.0.0.1:8080{path}" + (f"?{query}" if query else "")
        signing = AWSRequest(method=method, url=url, data=b"")
        SigV4Auth(Credentials(key, SECRET), "lambda", "us-east-1").add_auth(signing)
        headers += [(k.lower().encode(), v.encode()) for k, v in signing.headers.items()]
    scope = {
        "type": "http",
        "method": method,
        "path": unquote(path),
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "headers": headers,
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    answer: Response = await api(Request.from_scope(scope, receive, received=0.0))
    assert answer.status == 200
    assert (b"content-type", b"application/json") in answer.headers
    return json.loads(answer.body)


async def refused(api: ManagementApi, path: str, **options: Any) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        await call(api, path, **options)
    return caught.value


def test_the_model_check_finds_departures() -> None:
    wrong = {"FunctionName": "hello", "Timeout": "3", "State": "Running", "Bogus": 1, "Role": "x"}
    problems = conforms(wrong, LAMBDA.shape_for("FunctionConfiguration"))
    assert [problem.split(":")[0] for problem in problems] == [
        "FunctionConfiguration.Timeout",
        "FunctionConfiguration.State",
        "FunctionConfiguration.Bogus",
        "FunctionConfiguration.Role",
    ]
    mapping = {"UUID": "u", "LastModified": "2024-01-01", "BatchSize": 0}
    problems = conforms(mapping, LAMBDA.shape_for("EventSourceMappingConfiguration"))
    assert [problem.split(":")[0] for problem in problems] == [
        "EventSourceMappingConfiguration.UUID",  # too short
        "EventSourceMappingConfiguration.LastModified",  # a string, not seconds
        "EventSourceMappingConfiguration.BatchSize",  # below 1
    ]


# --- shapes ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("operation", "path"),
    [
        ("ListFunctions", "/2015-03-31/functions/"),
        ("GetFunction", "/2015-03-31/functions/hello"),
        ("GetFunction", "/2015-03-31/functions/team-a.worker"),
        ("GetFunction", "/2015-03-31/functions/team-a.shared"),
        ("GetFunctionConfiguration", "/2015-03-31/functions/hello/configuration"),
        ("GetFunctionConfiguration", "/2015-03-31/functions/team-a.worker/configuration"),
        ("ListEventSourceMappings", "/2015-03-31/event-source-mappings/"),
    ],
)
async def test_every_answer_is_of_aws_shapes_and_types(operation: str, path: str) -> None:
    answer = await call(management(table()), path)
    assert departures(answer, output(operation)) == []


async def test_a_function_configuration_reads_its_spec() -> None:
    configuration = await call(management(table()), "/2015-03-31/functions/hello/configuration")
    del configuration["CodeSha256"], configuration["Architectures"]  # checked below
    assert configuration == {
        "FunctionName": "hello",
        "FunctionArn": "arn:aws:lambda:us-east-1:000000000000:function:hello",
        "Runtime": "python3.12",
        "Role": "arn:aws:iam::000000000000:role/kubelambda-function",
        "Handler": "app.handler",
        "CodeSize": len("def handler(e, c): return e") + len("X = 1"),
        "Description": "",
        "Timeout": 20,
        "MemorySize": 256,
        "LastModified": "2023-11-14T22:13:20.000+0000",
        "Version": "$LATEST",
        # Literal values only: what comes from a Secret, a ConfigMap or the pod is left out.
        "Environment": {"Variables": {"GREETING": "hello", "EMPTY": ""}},
        "TracingConfig": {"Mode": "PassThrough"},
        "State": "Active",
        "LastUpdateStatus": "Successful",
        "PackageType": "Zip",
    }


async def test_get_function_says_where_the_code_is_and_names_the_object() -> None:
    api = management(table())
    hello = await call(api, "/2015-03-31/functions/hello")
    assert hello["Code"] == {"RepositoryType": "Inline"}
    assert hello["Tags"] == {"kubelambda.dev/namespace": "default", "kubelambda.dev/name": "hello"}
    # spec.reservedConcurrency, not what the pods could run (3 pods of 4).
    assert hello["Concurrency"] == {"ReservedConcurrentExecutions": 10}
    worker = await call(api, "/2015-03-31/functions/team-a.worker")
    assert "Concurrency" not in worker  # as Lambda, for a function that reserves none
    assert worker["Code"] == {
        "RepositoryType": "Image",
        "ImageUri": "registry.example.com/worker:1",
    }
    assert worker["Configuration"]["PackageType"] == "Image"
    assert "Runtime" not in worker["Configuration"]
    assert "CodeSha256" not in worker["Configuration"]
    shared = await call(api, "/2015-03-31/functions/team-a.shared")
    assert shared["Code"] == {"RepositoryType": "ConfigMap"}


async def test_a_local_folder_is_a_file_url(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "app.py").write_text("def handler(e, c): return e\n")
    function = parse_function(
        {
            "apiVersion": "kubelambda.dev/v1alpha1",
            "kind": "Function",
            "metadata": {"name": "local"},
            "spec": {"runtime": "python3.12", "handler": "app.handler", "code": {"path": "src"}},
        },
        manifest_dir=tmp_path,
    )
    answer = await call(management(routing_table([function], [])), "/2015-03-31/functions/local")
    assert answer["Code"] == {"RepositoryType": "Folder", "Location": (tmp_path / "src").as_uri()}
    assert departures(answer, output("GetFunction")) == []


def test_code_sha256_is_the_controllers_code_hash_in_base64() -> None:
    hello = table().function(HELLO).spec
    assert isinstance(hello, Function)
    files = {"app.py": "def handler(e, c): return e", "lib/util.py": "X = 1"}
    hexadecimal = code_hash(files).removeprefix("sha256:")
    assert code_facts(hello).sha256 == base64.b64encode(bytes.fromhex(hexadecimal)).decode()


async def test_event_source_mappings_read_their_triggers() -> None:
    answer = await call(management(table()), "/2015-03-31/event-source-mappings/")
    mappings = {m["FunctionArn"].rsplit(":", 1)[1]: m for m in answer["EventSourceMappings"]}
    orders = mappings["team-a.worker"]
    assert orders == {
        "UUID": orders["UUID"],
        "EventSourceMappingArn": (
            f"arn:aws:lambda:us-east-1:000000000000:event-source-mapping:{orders['UUID']}"
        ),
        "FunctionArn": "arn:aws:lambda:us-east-1:000000000000:function:team-a.worker",
        "EventSourceArn": "arn:aws:sqs:us-east-1:000000000000:ORDERS",
        "LastModified": 1714557600.0,  # the Trigger's creationTimestamp
        "State": "Enabled",
        "StateTransitionReason": "USER_INITIATED",
        "BatchSize": 50,
        "MaximumBatchingWindowInSeconds": 2,
        "StartingPosition": "AT_TIMESTAMP",
        "StartingPositionTimestamp": 1714521600.0,
        "FunctionResponseTypes": ["ReportBatchItemFailures"],
        "FilterCriteria": {"Filters": [{"Pattern": '{"body": {"kind": ["order"]}}'}]},
        "ScalingConfig": {"MaximumConcurrency": 5},
        "DestinationConfig": {
            "OnFailure": {
                "Destination": "arn:aws:lambda:us-east-1:000000000000:function:team-a.failures"
            }
        },
    }
    clicks = mappings["hello"]
    assert "EventSourceArn" not in clicks
    assert clicks["SelfManagedEventSource"] == {
        "Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": ["kafka-0:9092", "kafka-1:9092"]}
    }
    assert clicks["Topics"] == ["clicks", "views"]
    assert clicks["SelfManagedKafkaEventSourceConfig"] == {
        "ConsumerGroupId": "kubelambda.default.clicks"
    }
    assert (clicks["MaximumRetryAttempts"], clicks["LastModified"]) == (3, START)
    # Nothing polls a Trigger whose Function is missing.
    orphan = mappings["team-b.gone"]
    assert orphan["State"] == "Disabled"
    assert "gone does not exist" in orphan["StateTransitionReason"]


def test_a_mapping_uuid_is_stable_and_its_own() -> None:
    triggers = table().event_sources
    uuids = [mapping_uuid(trigger) for trigger in triggers]
    assert uuids == [mapping_uuid(trigger) for trigger in table().event_sources]
    assert len(set(uuids)) == len(triggers) == 3


# --- the calls ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", {"EventSourceMappings": 3}),
        ("FunctionName=team-a.worker", {"EventSourceMappings": 1}),
        (
            "FunctionName=arn%3Aaws%3Alambda%3Aus-east-1%3A000000000000%3Afunction%3Ahello",
            {"EventSourceMappings": 1},
        ),
        ("FunctionName=nobody", {"EventSourceMappings": 0}),
        (
            "EventSourceArn=arn%3Aaws%3Asqs%3Aus-east-1%3A000000000000%3AORDERS",
            {"EventSourceMappings": 1},
        ),
        (
            "EventSourceArn=arn%3Aaws%3Asqs%3Aus-east-1%3A000000000000%3ANONE",
            {"EventSourceMappings": 0},
        ),
    ],
)
async def test_mappings_filter_by_function_and_source(query: str, expected: dict[str, int]) -> None:
    answer = await call(management(table()), "/2015-03-31/event-source-mappings/", query=query)
    assert {"EventSourceMappings": len(answer["EventSourceMappings"])} == expected


async def test_a_mapping_by_its_uuid() -> None:
    routes = table()
    api = management(routes)
    for trigger in routes.event_sources:
        uuid = mapping_uuid(trigger)
        answer = await call(api, f"/2015-03-31/event-source-mappings/{uuid}")
        assert answer["UUID"] == uuid
        assert departures(answer, output("GetEventSourceMapping")) == []
    missing = await refused(api, "/2015-03-31/event-source-mappings/0000-nope")
    assert (missing.status, missing.error_type) == (404, "ResourceNotFoundException")


async def test_functions_come_in_pages_of_max_items_at_most_fifty() -> None:
    entries = [FunctionEntry(FunctionKey("default", f"fn-{n:03}")) for n in range(120)]
    api = management(RoutingTable(functions=entries))
    for max_items, sizes in ((None, [50, 50, 20]), (7, [7] * 17 + [1]), (500, [50, 50, 20])):
        names: list[str] = []
        query = f"MaxItems={max_items}" if max_items else ""
        pages = []
        while True:
            page = await call(api, "/2015-03-31/functions/", query=query)
            pages.append(len(page["Functions"]))
            names += [f["FunctionName"] for f in page["Functions"]]
            if "NextMarker" not in page:
                break
            marker = page["NextMarker"]
            query = f"Marker={marker}" + (f"&MaxItems={max_items}" if max_items else "")
        assert pages == sizes
        assert names == [f"fn-{n:03}" for n in range(120)]


async def test_mappings_come_in_pages() -> None:
    api = management(table())
    first = await call(api, "/2015-03-31/event-source-mappings/", query="MaxItems=2")
    assert len(first["EventSourceMappings"]) == 2
    rest = await call(
        api, "/2015-03-31/event-source-mappings/", query=f"MaxItems=2&Marker={first['NextMarker']}"
    )
    assert len(rest["EventSourceMappings"]) == 1
    assert "NextMarker" not in rest
    uuids = {m["UUID"] for m in first["EventSourceMappings"] + rest["EventSourceMappings"]}
    assert len(uuids) == 3


async def test_list_functions_leaves_out_what_lambda_leaves_out() -> None:
    answer = await call(management(table()), "/2015-03-31/functions")
    assert [f["FunctionName"] for f in answer["Functions"]] == [
        "hello",
        "team-a.shared",
        "team-a.worker",
    ]
    assert not any("State" in f or "LastUpdateStatus" in f for f in answer["Functions"])
    # FunctionVersion=ALL lists the same: $LATEST is every function's only version.
    every = await call(management(table()), "/2015-03-31/functions/", query="FunctionVersion=ALL")
    assert every == answer


@pytest.mark.parametrize(
    ("path", "query", "status", "error_type", "message"),
    [
        ("/2015-03-31/functions/nosuch", "", 404, "ResourceNotFoundException", "function:nosuch"),
        ("/2015-03-31/functions/hello", "Qualifier=3", 404, "ResourceNotFoundException", "$LATEST"),
        ("/2015-03-31/functions/Not_A_Name", "", 400, "ValidationException", "DNS label"),
        ("/2015-03-31/functions/", "MaxItems=0", 400, "ValidationException", "between 1 and"),
        ("/2015-03-31/functions/", "MaxItems=x", 400, "InvalidParameterValueException", "MaxItems"),
        ("/2015-03-31/functions/", "FunctionVersion=7", 400, "ValidationException", "ALL"),
        (
            "/2015-03-31/functions/hello/policy",
            "",
            404,
            "UnknownOperationException",
            "ListFunctions",
        ),
        ("/2015-03-31/layers", "", 404, "UnknownOperationException", "GetFunction"),
    ],
)
async def test_bad_reads_name_the_problem(
    path: str, query: str, status: int, error_type: str, message: str
) -> None:
    error = await refused(management(table()), path, query=query)
    assert (error.status, error.error_type) == (status, error_type)
    assert message in error.message


async def test_qualifier_latest_and_arns_name_a_function() -> None:
    api = management(table())
    for path, query in (
        ("/2015-03-31/functions/hello", "Qualifier=%24LATEST"),
        ("/2015-03-31/functions/hello%3A%24LATEST/configuration", ""),
        (
            "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A000000000000%3Afunction%3Ahello",
            "",
        ),
    ):
        answer = await call(api, path, query=query)
        assert answer.get("Configuration", answer)["FunctionName"] == "hello"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/2015-03-31/functions"),  # CreateFunction
        ("PUT", "/2015-03-31/functions/hello/code"),  # UpdateFunctionCode
        ("PUT", "/2015-03-31/functions/hello/configuration"),  # UpdateFunctionConfiguration
        ("DELETE", "/2015-03-31/functions/hello"),  # DeleteFunction
        ("POST", "/2015-03-31/event-source-mappings/"),  # CreateEventSourceMapping
        ("PUT", "/2015-03-31/event-source-mappings/x"),  # UpdateEventSourceMapping
        ("DELETE", "/2015-03-31/event-source-mappings/x"),  # DeleteEventSourceMapping
        ("POST", "/2015-03-31/functions/hello/versions"),  # PublishVersion
    ],
)
async def test_writes_are_refused_naming_kubectl(method: str, path: str) -> None:
    # Signed or not: the answer says nothing of any function.
    error = await refused(management(table(), auth=True), path, method=method)
    assert (error.status, error.error_type, error.message) == (
        403,
        "AccessDeniedException",
        READ_ONLY,
    )
    assert "kubectl apply" in READ_ONLY


async def test_last_modified_is_when_the_gateway_saw_the_spec_change() -> None:
    clock = FakeClock(wall=START)
    routes = [table()]
    api = ManagementApi(
        routes=lambda: routes[0],
        clock=clock,
        settings=GatewaySettings(invoke_auth=False),
        access_keys=StaticAccessKeys(),
    )

    async def modified(name: str) -> str:
        answer = await call(api, f"/2015-03-31/functions/{name}/configuration")
        return str(answer["LastModified"])

    clock.advance(60)
    routes[0] = table()  # the same specs, read again: nothing changed
    api.observe(routes[0])
    assert await modified("hello") == "2023-11-14T22:13:20.000+0000"
    clock.advance(60)
    routes[0] = table(MANIFESTS.replace("memoryMB: 256", "memoryMB: 512"))
    api.observe(routes[0])
    clock.advance(60)
    assert await modified("hello") == "2023-11-14T22:15:20.000+0000"
    assert await modified("team-a.worker") == "2023-11-14T22:13:20.000+0000"


# --- who may read ---------------------------------------------------------------------------


async def test_unsigned_reads_are_refused_when_the_gateway_asks_for_signatures() -> None:
    api = management(table(), auth=True)
    for path in ("/2015-03-31/functions/", "/2015-03-31/functions/nosuch"):
        error = await refused(api, path)
        assert (error.status, error.error_type) == (403, "MissingAuthenticationTokenException")


async def test_a_key_sees_only_the_functions_it_is_granted() -> None:
    api = management(table(), auth=True)
    listed = await call(api, "/2015-03-31/functions/", key=KEY)
    assert [f["FunctionName"] for f in listed["Functions"]] == ["hello"]
    everything = await call(api, "/2015-03-31/functions/", key="AKIAEVERYTHING000001")
    assert len(everything["Functions"]) == 3
    mappings = await call(api, "/2015-03-31/event-source-mappings/", key=KEY)
    assert [m["FunctionArn"].rsplit(":", 1)[1] for m in mappings["EventSourceMappings"]] == [
        "hello"
    ]
    assert (await call(api, "/2015-03-31/functions/hello", key=KEY))["Configuration"]


@pytest.mark.parametrize(
    ("path", "query", "action"),
    [
        ("/2015-03-31/functions/team-a.worker", "", "GetFunction"),
        ("/2015-03-31/functions/team-a.worker/configuration", "", "GetFunctionConfiguration"),
        # Refused before it is looked up: an ungranted key learns nothing of what exists.
        ("/2015-03-31/functions/team-a.nosuch", "", "GetFunction"),
        (
            "/2015-03-31/event-source-mappings/",
            "FunctionName=team-a.worker",
            "ListEventSourceMappings",
        ),
    ],
)
async def test_an_ungranted_function_is_access_denied(path: str, query: str, action: str) -> None:
    error = await refused(management(table(), auth=True), path, query=query, key=KEY)
    assert (error.status, error.error_type) == (403, "AccessDeniedException")
    assert (
        f"{KEY} is not authorized to perform: lambda:{action} on resource: arn:aws:"
        in error.message
    )


async def test_an_ungranted_mapping_is_access_denied() -> None:
    routes = table()
    orders = next(t for t in routes.event_sources if t.name == "orders")
    uuid = mapping_uuid(orders)
    error = await refused(
        management(routes, auth=True), f"/2015-03-31/event-source-mappings/{uuid}", key=KEY
    )
    assert (error.status, error.error_type) == (403, "AccessDeniedException")
    assert f"event-source-mapping:{uuid}" in error.message


# --- through the gateway's public port ------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status", "error_type"),
    [
        ("GET", "/2015-03-31/functions/nosuch", 404, "ResourceNotFoundException"),
        ("DELETE", "/2015-03-31/functions/hello", 403, "AccessDeniedException"),
        ("GET", "/2015-03-31/functions/hello/policy", 404, "UnknownOperationException"),
        ("HEAD", "/2015-03-31/functions/hello", 405, "MethodNotAllowedException"),
        ("GET", "/2015-03-31/functions/hello/invocations", 405, "MethodNotAllowedException"),
    ],
)
async def test_errors_on_the_public_port_are_lambdas(
    serve: StartGateway, method: str, path: str, status: int, error_type: str
) -> None:
    served = await serve()
    answer = await served.client.request(method, path)
    assert answer.status_code == status
    assert answer.headers["x-amzn-errortype"] == error_type
    assert answer.headers["x-amzn-requestid"]
    if method != "HEAD":
        body = answer.json()
        assert (body["errorType"], body["Type"]) == (error_type, "User")
        assert body["message"]


async def test_the_public_port_serves_the_reads_and_still_invokes(serve: StartGateway) -> None:
    served = await serve()
    served.gateway.set_routes(table())
    listed = await served.client.get("/2015-03-31/functions")
    assert listed.status_code == 200
    assert listed.json()["Functions"][0]["FunctionName"] == "hello"
    assert listed.headers["x-amzn-requestid"]
    # A function named "invocations" is read, not invoked.
    served.gateway.set_routes(
        RoutingTable(functions=[FunctionEntry(FunctionKey("default", "invocations"))])
    )
    named = await served.client.get("/2015-03-31/functions/invocations")
    assert named.json()["Configuration"]["FunctionName"] == "invocations"
    dry = await served.client.post(
        "/2015-03-31/functions/invocations/invocations",
        headers={"x-amz-invocation-type": "DryRun"},
    )
    assert dry.status_code == 204
