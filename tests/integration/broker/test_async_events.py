"""Asynchronous events on a real NATS JetStream, through `kubelambda local --nats` (the same
store, dispatcher and Invoke API path as the cluster's): 202 only once the broker holds the
event, nothing lost when the broker or the process that delivers is killed, retries then the
dead letter, and a broker that is down answers 503 while synchronous calls go on."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import nats
import nats.js.errors
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from harness.nats import NatsServer, nats_server
from support.local import LocalMode, lambda_client, start_local
from support.processes import kill_tree
from support.waiting import free_port, wait_for

FUNCTIONS = """
apiVersion: kubelambda.dev/v1alpha1
kind: Function
metadata: {{name: worker}}
spec:
  runtime: python3.12
  handler: app.handler
  concurrency: 4
  timeoutSeconds: 60
  env: [{{name: HANDLED, value: "{handled}"}}]
  delivery: {{retries: 1, backoffSeconds: 1, deadLetter: {{function: failures}}{success}}}
  code:
    inline:
      files:
        app.py: |
          import json, os, time
          def handler(event, context):
              time.sleep(event.get("sleep", 0))
              if event.get("fail"):
                  raise RuntimeError("failed on purpose")
              path = os.path.join(os.environ["HANDLED"], context.aws_request_id)
              with open(path + ".tmp", "w") as out:
                  json.dump(event, out)
              os.replace(path + ".tmp", path)
              return {{"handled": context.aws_request_id}}
---
apiVersion: kubelambda.dev/v1alpha1
kind: Function
metadata: {{name: failures}}
spec:
  runtime: python3.12
  handler: app.handler
  env: [{{name: LETTERS, value: "{letters}"}}]
  code:
    inline:
      files:
        app.py: |
          import json, os
          def handler(event, context):
              path = os.path.join(os.environ["LETTERS"], event["requestContext"]["requestId"])
              with open(path + ".tmp", "w") as out:  # the test waits for `path`, then reads it
                  json.dump(event, out)
              os.replace(path + ".tmp", path)
"""


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[NatsServer]:
    with nats_server(store_dir=tmp_path / "jetstream", log_dir=tmp_path) as server:
        yield server


class Setup:
    def __init__(self, tmp_path: Path, broker: NatsServer, success: str = "") -> None:
        self.handled = tmp_path / "handled"
        self.letters = tmp_path / "letters"
        self.handled.mkdir()
        self.letters.mkdir()
        self.manifest = tmp_path / "functions.yaml"
        self.manifest.write_text(
            FUNCTIONS.format(handled=self.handled, letters=self.letters, success=success)
        )
        self.broker = broker
        self.started: list[LocalMode] = []

    def local(self, *options: str) -> LocalMode:
        local = start_local(self.manifest, "--nats", self.broker.url, *options)
        self.started.append(local)
        return local

    def handled_ids(self) -> set[str]:
        return {p.name for p in self.handled.iterdir() if not p.name.endswith(".tmp")}


@pytest.fixture
def setup(tmp_path: Path, broker: NatsServer) -> Iterator[Setup]:
    made = Setup(tmp_path, broker)
    yield made
    for local in made.started:
        local.stop()


def event(client: Any, payload: dict[str, Any]) -> str:
    answer = client.invoke(
        FunctionName="worker", InvocationType="Event", Payload=json.dumps(payload)
    )
    assert answer["StatusCode"] == 202
    return str(answer["ResponseMetadata"]["RequestId"])


def test_events_are_handled_once_each_with_the_id_they_were_accepted_with(setup: Setup) -> None:
    local = setup.local()
    client = lambda_client(local.url)
    accepted = {event(client, {"n": n}) for n in range(30)}
    wait_for(lambda: setup.handled_ids() == accepted, timeout=60, what="30 events handled")
    assert json.loads((setup.handled / sorted(accepted)[0]).read_text())["n"] in range(30)


def test_a_failing_event_is_retried_then_its_record_goes_to_the_dead_letter(setup: Setup) -> None:
    local = setup.local()
    request_id = event(lambda_client(local.url), {"fail": True, "order": 7})
    letter_path = setup.letters / request_id
    wait_for(letter_path.exists, timeout=60, what="the dead letter's record")
    record = json.loads(letter_path.read_text())
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 2  # the try and one retry
    assert record["requestPayload"] == {"fail": True, "order": 7}
    assert record["responseContext"]["functionError"] == "Unhandled"


def test_a_broker_that_is_down_gets_503_for_events_while_calls_go_on(setup: Setup) -> None:
    local = setup.local()
    client = lambda_client(local.url)
    event(client, {"warm": True})
    setup.broker.stop()
    with pytest.raises(ClientError) as refused:
        client.invoke(FunctionName="worker", InvocationType="Event", Payload=b"{}")
    response = refused.value.response
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert response["ResponseMetadata"]["HTTPHeaders"]["retry-after"].isdigit()
    answer = client.invoke(FunctionName="worker", Payload=json.dumps({"sync": True}))
    assert json.loads(answer["Payload"].read())["handled"]
    setup.broker.start()
    later = wait_for(
        lambda: _try_event(client), timeout=60, what="Event invocations accepted again"
    )
    wait_for(lambda: later in setup.handled_ids(), timeout=60, what="the event after recovery")


def _try_event(client: Any) -> str | None:
    try:
        return event(client, {"after": True})
    except ClientError:
        return None


def test_an_event_taken_by_a_process_killed_mid_delivery_is_delivered_again(
    setup: Setup,
) -> None:
    first = setup.local("--nats-ack-wait", "3")
    request_id = event(lambda_client(first.url), {"sleep": 4})
    first.wait_for_line("0 -> 1 instances", timeout=30)
    # As a node failure: the dispatcher, the gateway and the function's instance die at once.
    kill_tree(first.process.pid)
    first.process.wait(10)
    time.sleep(5)  # longer than the function's 4 s: had anything survived, it would be done
    assert request_id not in setup.handled_ids()
    # Another process takes it once JetStream gives up on the dead one (ack wait, 3 s).
    second = setup.local("--nats-ack-wait", "3")
    wait_for(
        lambda: request_id in setup.handled_ids(),
        timeout=90,
        what=f"event {request_id} delivered after the kill\n{second.output()}",
    )


def test_no_accepted_event_is_lost_when_the_broker_restarts_mid_flow(setup: Setup) -> None:
    local = setup.local()
    # boto3 as a caller would configure it: 503s (the broker away) are retried.
    client = boto3.client(
        "lambda",
        endpoint_url=local.url,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(retries={"mode": "standard", "max_attempts": 10}, read_timeout=30),
    )

    def send(n: int) -> str | None:
        try:
            return event(client, {"n": n})
        except ClientError:
            return None  # refused after its retries: never accepted, so not owed

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        sent = [pool.submit(send, n) for n in range(120)]
        wait_for(lambda: len(setup.handled_ids()) >= 20, timeout=60, what="the flow under way")
        setup.broker.restart()
        accepted = {f.result() for f in sent} - {None}
    assert len(accepted) >= 100, "most events get through the broker's restart"
    wait_for(
        lambda: accepted <= setup.handled_ids(),
        timeout=120,
        what=f"all {len(accepted)} accepted events handled",
    )


def test_kubelambda_dispatcher_delivers_what_a_gateway_published(setup: Setup) -> None:
    local = setup.local("--no-dispatch")
    client = lambda_client(local.url)
    accepted = {event(client, {"n": n}) for n in range(10)}
    time.sleep(3)  # long enough for a delivery, had anything been delivering
    assert setup.handled_ids() == set()
    metrics_port = free_port()
    dispatcher = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kubelambda.cli",
            "dispatcher",
            "--nats",
            setup.broker.url,
            "--gateway-url",
            local.url,
            "--metrics-port",
            str(metrics_port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(
            lambda: setup.handled_ids() == accepted, timeout=60, what="the dispatcher's deliveries"
        )
        metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
        assert "kubelambda_async_backlog" in metrics
    finally:
        dispatcher.send_signal(signal.SIGTERM)
        output, _ = dispatcher.communicate(timeout=30)
    assert dispatcher.returncode == 0, output


def test_a_success_record_is_published_to_a_subject_destination(
    tmp_path: Path, broker: NatsServer
) -> None:
    setup = Setup(tmp_path, broker, success=", onSuccess: {subject: results.worker}")

    async def results_stream() -> None:
        client = await nats.connect(broker.url)
        try:
            await client.jetstream().add_stream(name="RESULTS", subjects=["results.>"])
        finally:
            await client.close()

    async def records() -> list[tuple[dict[str, Any], dict[str, str]]]:
        client = await nats.connect(broker.url)
        try:
            js = client.jetstream()
            info = await js.stream_info("RESULTS")
            found = []
            for sequence in range(info.state.first_seq, info.state.last_seq + 1):
                with contextlib.suppress(nats.js.errors.NotFoundError):
                    message = await js.get_msg("RESULTS", sequence)
                    found.append((json.loads(message.data or b"null"), message.headers or {}))
            return found
        finally:
            await client.close()

    asyncio.run(results_stream())
    local = setup.local()
    trace = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    try:
        # The Invoke API as boto3 calls it, with the caller's X-Ray trace header.
        answer = httpx.post(
            f"{local.url}/2015-03-31/functions/worker/invocations",
            headers={"X-Amz-Invocation-Type": "Event", "X-Amzn-Trace-Id": trace},
            content=json.dumps({"n": 1}),
            timeout=30,
        )
        assert answer.status_code == 202, answer.text
        request_id = answer.headers["x-amzn-requestid"]
        [(record, headers)] = wait_for(
            lambda: asyncio.run(records()), timeout=60, what="the success record"
        )
    finally:
        local.stop()
    assert record["requestContext"]["requestId"] == request_id
    assert record["requestContext"]["condition"] == "Success"
    assert record["responsePayload"] == {"handled": request_id}
    # The record carries the event's trace on to whoever reads the subject.
    assert headers.get("X-Amzn-Trace-Id") == trace


FUNCTION = """
apiVersion: kubelambda.dev/v1alpha1
kind: Function
metadata: {{name: {name}}}
spec:
  runtime: python3.12
  handler: app.handler
  concurrency: 2
  timeoutSeconds: 30
  scaling: {{maxReplicas: 1}}
  env: [{{name: HANDLED, value: "{handled}"}}]
  code:
    inline:
      files:
        app.py: |
          import os, time
          def handler(event, context):
              time.sleep(event.get("sleep", 0))
              name = f"{{context.function_name}}-{{context.aws_request_id}}"
              open(os.path.join(os.environ["HANDLED"], name), "w").close()
"""


def test_one_functions_backlog_does_not_hold_up_another(tmp_path: Path, broker: NatsServer) -> None:
    """slow gets more events than a dispatcher has workers (32): in one queue in arrival order,
    fast's event would wait until about 50 of them were done; with a lane and a cap per
    function it passes them."""
    handled = tmp_path / "handled"
    handled.mkdir()
    manifest = tmp_path / "two.yaml"
    manifest.write_text(
        "---".join(FUNCTION.format(name=name, handled=handled) for name in ("slow", "fast"))
    )
    local = start_local(manifest, "--nats", broker.url)
    try:
        client = lambda_client(local.url)
        for _ in range(80):  # about 80 s of work for slow: two at a time, 2 s each
            client.invoke(FunctionName="slow", InvocationType="Event", Payload=b'{"sleep": 2}')
        client.invoke(FunctionName="fast", InvocationType="Event", Payload=b"{}")
        wait_for(
            lambda: any(p.name.startswith("fast-") for p in handled.iterdir()),
            timeout=40,
            what="fast's event, behind slow's backlog",
        )
        done_slow = sum(p.name.startswith("slow-") for p in handled.iterdir())
    finally:
        local.stop()
    assert done_slow < 20, f"fast's event waited for {done_slow} of slow's"
