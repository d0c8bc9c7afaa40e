"""Lambda's management API read calls, as a new user tries them: boto3 and the aws CLI against
`kubelambda local` (open on loopback), and against a gateway that asks for SigV4, where a key
reads only the functions it is granted. Writes are refused with a word on kubectl."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.session
import httpx
import pytest
import yaml
from botocore.exceptions import ClientError

from integration.gateway.conftest import GatewayThread
from kubelambda.api import parse_function, parse_trigger
from kubelambda.gateway.access import AccessKey, StaticAccessKeys
from kubelambda.gateway.routing import routing_table
from kubelambda.gateway.settings import GatewaySettings
from support.aws import lambda_client
from support.local import LocalMode, start_local
from unit.gateway.sources.test_management import departures

LAMBDA = botocore.session.get_session().get_service_model("lambda")
KEY, SECRET = "AKIAKUBELAMBDATEST01", "s3cr3t/with+chars"

FUNCTION = """
apiVersion: kubelambda.dev/v1alpha1
kind: Function
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  runtime: python3.12
  handler: app.handler
  code: {{inline: {{files: {{app.py: "def handler(event, context): return event"}}}}}}
"""
MANIFESTS = """
apiVersion: kubelambda.dev/v1alpha1
kind: Function
metadata: {name: hello}
spec:
  runtime: python3.12
  handler: app.handler
  code: {path: src}
  memoryMB: 256
  env: [{name: GREETING, value: hi}]
---
apiVersion: kubelambda.dev/v1alpha1
kind: Trigger
metadata: {name: orders, namespace: team-a}
spec: {function: worker, queue: {stream: ORDERS, batchSize: 5}}
""" + "".join(
    "---" + FUNCTION.format(name=name, namespace=namespace)
    for namespace, name in (
        ("default", "alpha"),
        ("default", "beta"),
        ("team-a", "worker"),
        ("team-b", "reports"),
    )
)
NAMES = ["alpha", "beta", "hello", "team-a.worker", "team-b.reports"]


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMode]:
    folder = tmp_path_factory.mktemp("management")
    (folder / "src").mkdir()
    (folder / "src" / "app.py").write_text("def handler(event, context):\n    return event\n")
    (folder / "functions.yaml").write_text(MANIFESTS)
    served = start_local(folder / "functions.yaml")
    yield served
    served.stop()


def raw(url: str, path: str, **query: Any) -> Any:
    """The answer's JSON as sent (botocore parses it without checking it)."""
    answer = httpx.get(f"{url}{path}", params=query, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()


def aws(url: str, tmp_path: Path, *args: str, key: str = KEY) -> subprocess.CompletedProcess[str]:
    """`aws lambda …` as a user types it, with credentials in the environment only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_DEFAULT_REGION="us-east-1",
        AWS_CONFIG_FILE=str(tmp_path / "none"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
        AWS_ACCESS_KEY_ID=key,
        AWS_SECRET_ACCESS_KEY=SECRET,
        AWS_PAGER="",
    )
    command = Path(sys.executable).with_name("aws")
    assert command.exists(), f"{command} is missing: scripts/setup installs awscli (the dev extra)"
    return subprocess.run(
        [str(command), "lambda", *args, "--endpoint-url", url],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


# --- kubelambda local -----------------------------------------------------------------------


def test_boto3_reads_functions_as_lambda_describes_them(local: LocalMode) -> None:
    client = lambda_client(local.url)
    listed = client.list_functions()["Functions"]
    assert [f["FunctionName"] for f in listed] == NAMES
    hello = client.get_function(FunctionName="hello")
    assert hello["Configuration"]["Environment"] == {"Variables": {"GREETING": "hi"}}
    assert hello["Configuration"]["MemorySize"] == 256
    assert hello["Code"]["RepositoryType"] == "Folder"
    assert hello["Code"]["Location"].startswith("file:///")
    worker = client.get_function_configuration(
        FunctionName="arn:aws:lambda:us-east-1:000000000000:function:team-a.worker"
    )
    assert (worker["FunctionName"], worker["Runtime"], worker["PackageType"]) == (
        "team-a.worker",
        "python3.12",
        "Zip",
    )
    assert (worker["State"], worker["LastUpdateStatus"], worker["Version"]) == (
        "Active",
        "Successful",
        "$LATEST",
    )
    assert worker["CodeSha256"]
    client.close()
    # What the SDKs were sent is of the types AWS documents, field by field.
    for operation, path in (
        ("ListFunctions", "/2015-03-31/functions"),
        ("GetFunction", "/2015-03-31/functions/hello"),
        ("GetFunctionConfiguration", "/2015-03-31/functions/team-a.worker/configuration"),
        ("ListEventSourceMappings", "/2015-03-31/event-source-mappings"),
    ):
        shape = LAMBDA.operation_model(operation).output_shape
        assert shape is not None
        assert departures(raw(local.url, path), shape) == []


def test_boto3_pages_through_functions_with_max_items(local: LocalMode) -> None:
    client = lambda_client(local.url)
    pages, names, marker = [], [], None
    while True:
        page = client.list_functions(MaxItems=2, **({"Marker": marker} if marker else {}))
        pages.append(len(page["Functions"]))
        names += [f["FunctionName"] for f in page["Functions"]]
        marker = page.get("NextMarker")
        if marker is None:
            break
    assert (pages, names) == ([2, 2, 1], NAMES)
    paginator = client.get_paginator("list_functions")
    paged = paginator.paginate(PaginationConfig={"PageSize": 3})
    assert [f["FunctionName"] for page in paged for f in page["Functions"]] == NAMES
    client.close()


def test_boto3_lists_a_queue_trigger_as_an_event_source_mapping(local: LocalMode) -> None:
    client = lambda_client(local.url)
    (mapping,) = client.list_event_source_mappings()["EventSourceMappings"]
    assert mapping["EventSourceArn"] == "arn:aws:sqs:us-east-1:000000000000:ORDERS"
    assert mapping["FunctionArn"].endswith(":function:team-a.worker")
    assert (mapping["BatchSize"], mapping["State"]) == (5, "Enabled")
    assert isinstance(mapping["LastModified"], datetime.datetime)  # parsed as a timestamp
    again = client.get_event_source_mapping(UUID=mapping["UUID"])
    assert {k: v for k, v in again.items() if k != "ResponseMetadata"} == mapping
    by_function = client.list_event_source_mappings(FunctionName="team-a.worker")
    assert [m["UUID"] for m in by_function["EventSourceMappings"]] == [mapping["UUID"]]
    assert client.list_event_source_mappings(FunctionName="hello")["EventSourceMappings"] == []
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.get_function(FunctionName="nosuch")
    client.close()


def test_the_aws_cli_lists_the_functions(local: LocalMode, tmp_path: Path) -> None:
    done = aws(local.url, tmp_path, "list-functions")
    assert done.returncode == 0, done.stderr
    assert [f["FunctionName"] for f in json.loads(done.stdout)["Functions"]] == NAMES
    text = aws(local.url, tmp_path, "get-function-configuration", "--function-name", "hello")
    assert json.loads(text.stdout)["Handler"] == "app.handler"


def test_a_write_is_refused_as_the_cli_prints_it(local: LocalMode, tmp_path: Path) -> None:
    done = aws(local.url, tmp_path, "delete-function", "--function-name", "hello")
    assert done.returncode != 0
    assert done.stderr.strip() == (
        "An error occurred (AccessDeniedException) when calling the DeleteFunction operation: "
        "kubelambda's Lambda API is read-only: Functions and Triggers are changed with kubectl "
        "apply (or through your GitOps repository), not through the Lambda API"
    )
    client = lambda_client(local.url)
    with pytest.raises(ClientError) as refused:
        client.update_function_configuration(FunctionName="hello", MemorySize=512)
    error = refused.value.response
    assert (error["ResponseMetadata"]["HTTPStatusCode"], error["Error"]["Code"]) == (
        403,
        "AccessDeniedException",
    )
    assert client.get_function_configuration(FunctionName="hello")["MemorySize"] == 256
    client.close()


# --- with SigV4, as on a cluster ------------------------------------------------------------

KAFKA = """
---
apiVersion: kubelambda.dev/v1alpha1
kind: Trigger
metadata: {name: clicks}
spec:
  function: alpha
  kafka: {bootstrapServers: ["kafka-0:9092"], topics: [clicks], startingPosition: LATEST}
"""


@pytest.fixture
def keyed(gateway_thread: GatewayThread, tmp_path: Path) -> str:
    """A gateway asking for SigV4, serving the same manifests, with a key for default/* only."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "app.py").write_text("def handler(event, context):\n    return event\n")
    documents = [d for d in yaml.safe_load_all(MANIFESTS + KAFKA) if d]
    table = routing_table(
        [parse_function(d, manifest_dir=tmp_path) for d in documents if d["kind"] == "Function"],
        [parse_trigger(d) for d in documents if d["kind"] == "Trigger"],
    )
    addresses = gateway_thread.start(
        functions=[],
        settings=GatewaySettings(invoke_auth=True),
        access_keys=StaticAccessKeys([AccessKey(id=KEY, secret=SECRET, grants=("default/*",))]),
    )
    gateway = gateway_thread.gateway
    assert gateway is not None

    async def route() -> None:
        gateway.set_routes(table)

    gateway_thread.run(route())
    return addresses.public_url


def test_a_key_reads_only_what_it_is_granted(keyed: str, tmp_path: Path) -> None:
    client = lambda_client(keyed, key=KEY, secret=SECRET)
    listed = client.list_functions()["Functions"]
    assert [f["FunctionName"] for f in listed] == ["alpha", "beta", "hello"]
    assert client.get_function(FunctionName="hello")["Configuration"]["FunctionName"] == "hello"
    (mapping,) = client.list_event_source_mappings()["EventSourceMappings"]
    assert mapping["SelfManagedEventSource"] == {
        "Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": ["kafka-0:9092"]}
    }
    for call in (
        lambda: client.get_function(FunctionName="team-a.worker"),
        lambda: client.get_function_configuration(FunctionName="team-b.reports"),
        lambda: client.list_event_source_mappings(FunctionName="team-a.worker"),
    ):
        with pytest.raises(ClientError) as refused:
            call()
        error = refused.value.response
        assert (error["ResponseMetadata"]["HTTPStatusCode"], error["Error"]["Code"]) == (
            403,
            "AccessDeniedException",
        )
        assert f"User: {KEY} is not authorized to perform: lambda:" in error["Error"]["Message"]
    client.close()
    cli = aws(keyed, tmp_path, "get-function", "--function-name", "team-a.worker")
    assert cli.returncode != 0
    assert "(AccessDeniedException) when calling the GetFunction operation" in cli.stderr
    listed_by_cli = aws(keyed, tmp_path, "list-functions", "--query", "Functions[].FunctionName")
    assert json.loads(listed_by_cli.stdout) == ["alpha", "beta", "hello"]


def test_unsigned_and_unknown_callers_read_nothing(keyed: str) -> None:
    answer = httpx.get(f"{keyed}/2015-03-31/functions", timeout=30)
    assert answer.status_code == 403
    assert answer.json()["errorType"] == "MissingAuthenticationTokenException"
    stranger = lambda_client(keyed, key="AKIANOSUCHKEY0000000", secret=SECRET)
    with pytest.raises(ClientError) as refused:
        stranger.list_functions()
    assert refused.value.response["Error"]["Code"] == "UnrecognizedClientException"
    stranger.close()
