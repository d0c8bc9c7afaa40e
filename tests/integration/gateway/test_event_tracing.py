"""The caller's trace through an Event invocation to the real runtime's handler
(`_X_AMZN_TRACE_ID`), and on to its on-success destination Function: the gateway's own
asynchronous delivery (the in-memory store) with boto3 as the caller."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest

from integration.gateway.conftest import GatewayThread
from kubelambda.api.identity import FunctionKey
from kubelambda.delivery.jobs import DeliveryPolicy, Target
from kubelambda.gateway.platform import Instance
from kubelambda.gateway.routing import FunctionEntry
from support.runtime import RuntimeProcess, start_runtime, write_code
from support.waiting import wait_for

TRACED = FunctionKey("default", "traced")
DESTINATION = FunctionKey("default", "destination")
ROOT = "1-5759e988-bd862e3fe1be46a994272793"
PARENT = "53995c3f42cd8ad8"

# One runtime serves both functions: the event names the file to write, the destination's
# record carries that event (requestPayload), so its invocation writes beside it.
APP = """
import json
import os


def handler(event, context):
    if "requestPayload" in event:
        path = event["requestPayload"]["write"] + ".destination"
    else:
        path = event["write"]
    with open(path + ".partial", "w") as out:
        json.dump({"trace": os.environ.get("_X_AMZN_TRACE_ID")}, out)
    os.replace(path + ".partial", path)
    return {"ok": True}
"""


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[RuntimeProcess]:
    process = start_runtime(
        code_dir=write_code(tmp_path / "code", {"app.py": APP}),
        env={"AWS_LAMBDA_FUNCTION_NAME": "traced", "AWS_LAMBDA_FUNCTION_TIMEOUT": "5"},
    )
    yield process
    process.stop()


def fields(header: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in header.split(";"))


def seen_trace(path: Path) -> dict[str, str]:
    wait_for(path.exists, timeout=20, what=f"the handler to write {path.name}")
    trace: str = json.loads(path.read_text())["trace"]
    return fields(trace)


def test_an_event_and_its_success_destination_run_in_the_callers_trace(
    gateway_thread: GatewayThread, runtime: RuntimeProcess, tmp_path: Path
) -> None:
    policy = DeliveryPolicy(backoff_seconds=0.01, on_success=Target(function=DESTINATION))
    addresses = gateway_thread.start(
        functions=[
            FunctionEntry(TRACED, timeout_seconds=5, delivery=policy),
            FunctionEntry(DESTINATION, timeout_seconds=5),
        ],
    )
    address = urlsplit(runtime.url)
    instance = Instance("runtime", address.hostname or "", address.port or 0, 1)
    gateway_thread.set_instances(TRACED, [instance])
    gateway_thread.set_instances(DESTINATION, [instance])
    client = boto3.client(
        "lambda",
        endpoint_url=addresses.public_url,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )

    def add(request: Any, **_: Any) -> None:
        request.headers["X-Amzn-Trace-Id"] = f"Root={ROOT};Parent={PARENT};Sampled=1"

    marker = tmp_path / "ran"
    with closing(client):
        client.meta.events.register("before-send.lambda.Invoke", add)
        answer = client.invoke(
            FunctionName="traced",
            InvocationType="Event",
            Payload=json.dumps({"write": str(marker)}).encode(),
        )
    assert answer["StatusCode"] == 202
    assert seen_trace(marker) == {"Root": ROOT, "Parent": PARENT, "Sampled": "1"}
    destination = seen_trace(tmp_path / "ran.destination")
    assert destination["Root"] == ROOT
