"""Trace context through the gateway to the real runtime's handler (`_X_AMZN_TRACE_ID`), and the
gateway's OpenTelemetry spans exported over OTLP/HTTP to a collector on loopback."""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterator
from contextlib import closing
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from integration.gateway.conftest import GatewayThread
from kubelambda.api.identity import FunctionKey
from kubelambda.gateway.platform import Instance
from kubelambda.gateway.routing import FunctionEntry, HttpRoute
from kubelambda.gateway.settings import GatewaySettings
from support.runtime import RuntimeProcess, start_runtime, write_code
from support.waiting import wait_for

TRACED = FunctionKey("default", "traced")
TRACE = "5759e988bd862e3fe1be46a994272793"
ROOT = "1-5759e988-bd862e3fe1be46a994272793"
PARENT = "53995c3f42cd8ad8"

APP = """
import json
import os


def handler(event, context):
    trace = os.environ.get("_X_AMZN_TRACE_ID")
    if event.get("version") == "2.0":
        return {"statusCode": 200, "body": json.dumps({"trace": trace})}
    return {"trace": trace}
"""


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[RuntimeProcess]:
    process = start_runtime(
        code_dir=write_code(tmp_path / "code", {"app.py": APP}),
        env={"AWS_LAMBDA_FUNCTION_NAME": "traced", "AWS_LAMBDA_FUNCTION_TIMEOUT": "5"},
    )
    yield process
    process.stop()


def serve(gateway_thread: GatewayThread, runtime: RuntimeProcess) -> tuple[str, Any]:
    addresses = gateway_thread.start(
        functions=[FunctionEntry(TRACED, timeout_seconds=5)],
        routes=[HttpRoute(TRACED, "/traced")],
    )
    address = urlsplit(runtime.url)
    instance = Instance("runtime", address.hostname or "", address.port or 0, 1)
    gateway_thread.set_instances(TRACED, [instance])
    client = boto3.client(
        "lambda",
        endpoint_url=addresses.public_url,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    return addresses.public_url, client


def fields(header: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in header.split(";"))


def invoke_api_trace(client: Any, **headers: str) -> str:
    """The handler's `_X_AMZN_TRACE_ID` through the Invoke API, the caller adding `headers`."""

    def add(request: Any, **_: Any) -> None:
        request.headers.update(headers)

    client.meta.events.register("before-send.lambda.Invoke", add)
    try:
        answer = client.invoke(FunctionName="traced", Payload=b"{}")
    finally:
        client.meta.events.unregister("before-send.lambda.Invoke", add)
    trace: str = json.loads(answer["Payload"].read())["trace"]
    return trace


def test_the_handler_sees_the_callers_trace(
    gateway_thread: GatewayThread, runtime: RuntimeProcess
) -> None:
    url, client = serve(gateway_thread, runtime)
    with closing(client):
        # HTTP trigger, X-Ray header: root, parent and decision passed on, other keys kept.
        answer = httpx.get(
            f"{url}/traced",
            headers={"X-Amzn-Trace-Id": f"Root={ROOT};Parent={PARENT};Sampled=1;Lineage=1f:2"},
            timeout=30,
        )
        assert answer.status_code == 200
        seen = answer.json()["trace"]
        assert seen == f"Root={ROOT};Parent={PARENT};Sampled=1;Lineage=1f:2"

        # HTTP trigger, W3C header only: the same trace id in X-Ray form.
        answer = httpx.get(
            f"{url}/traced", headers={"traceparent": f"00-{TRACE}-{PARENT}-00"}, timeout=30
        )
        assert fields(answer.json()["trace"]) == {"Root": ROOT, "Parent": PARENT, "Sampled": "0"}

        # Invoke API (boto3), each header.
        seen = invoke_api_trace(client, **{"X-Amzn-Trace-Id": f"Root={ROOT};Parent={PARENT}"})
        assert fields(seen)["Root"] == ROOT
        assert fields(seen)["Parent"] == PARENT
        seen = invoke_api_trace(client, traceparent=f"00-{TRACE}-{PARENT}-01")
        assert fields(seen) == {"Root": ROOT, "Parent": PARENT, "Sampled": "1"}


def test_a_new_trace_starts_when_the_caller_sends_none_or_an_invalid_one(
    gateway_thread: GatewayThread, runtime: RuntimeProcess
) -> None:
    url, client = serve(gateway_thread, runtime)
    roots = set()
    with closing(client):
        for headers in ({}, {"X-Amzn-Trace-Id": "Root=1-bad", "traceparent": "00-zz"}):
            answer = httpx.get(f"{url}/traced", headers=headers, timeout=30)
            assert answer.status_code == 200  # never refused for a bad trace header
            seen = fields(answer.json()["trace"])
            assert re.fullmatch(r"1-[0-9a-f]{8}-[0-9a-f]{24}", seen["Root"])
            assert re.fullmatch(r"[0-9a-f]{16}", seen["Parent"])
            roots.add(seen["Root"])
        seen = fields(invoke_api_trace(client))
        assert re.fullmatch(r"1-[0-9a-f]{8}-[0-9a-f]{24}", seen["Root"])
        roots.add(seen["Root"])
    assert len(roots) == 3


class Collector:
    """An OTLP/HTTP receiver on loopback: keeps every span POSTed to /v1/traces."""

    def __init__(self) -> None:
        self.spans: list[Any] = []
        self.resources: list[dict[str, Any]] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.path == "/v1/traces":
                    request = ExportTraceServiceRequest()
                    request.ParseFromString(body)
                    for resource_spans in request.resource_spans:
                        attributes = {
                            a.key: a.value.string_value for a in resource_spans.resource.attributes
                        }
                        for scope in resource_spans.scope_spans:
                            collector.spans.extend(scope.spans)
                            collector.resources.append(attributes)
                self.send_response(200 if self.path == "/v1/traces" else 404)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def collector() -> Iterator[Collector]:
    running = Collector()
    yield running
    running.close()


def attributes(span: Any) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for attribute in span.attributes:
        value = attribute.value
        values[attribute.key] = getattr(value, value.WhichOneof("value"))
    return values


def test_spans_are_exported_over_otlp_in_the_callers_trace(
    gateway_thread: GatewayThread,
    runtime: RuntimeProcess,
    collector: Collector,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "gateway-under-test")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    url, client = serve(gateway_thread, runtime)
    with closing(client):
        answer = httpx.get(
            f"{url}/traced",
            headers={"traceparent": f"00-{TRACE}-{PARENT}-01"},
            timeout=30,
        )
    assert answer.status_code == 200
    handed = fields(answer.json()["trace"])

    wait_for(lambda: len(collector.spans) >= 3, timeout=20, what="three spans at the collector")
    spans = {span.name: span for span in collector.spans}
    assert set(spans) == {"invoke", "hold", "upstream"}
    invoke, hold, upstream = spans["invoke"], spans["hold"], spans["upstream"]
    for span in (invoke, hold, upstream):
        assert span.trace_id.hex() == TRACE
    assert invoke.parent_span_id.hex() == PARENT
    assert hold.parent_span_id == invoke.span_id
    assert upstream.parent_span_id == invoke.span_id
    # The handler's parent is the gateway's upstream call, in the caller's trace and decision.
    assert handed == {"Root": ROOT, "Parent": upstream.span_id.hex(), "Sampled": "1"}
    described = attributes(invoke)
    assert described["faas.name"] == "traced"
    assert described["faas.invocation_id"] == answer.headers["apigw-requestid"]
    assert described["cloud.region"] == "us-east-1"
    assert described["faas.coldstart"] is False
    assert collector.resources[0]["service.name"] == "gateway-under-test"
    gateway = gateway_thread.gateway
    assert gateway is not None and gateway.invoker.tracer is not None
    gateway.invoker.tracer.shutdown()


def test_a_new_trace_gets_a_root_span_with_the_handlers_trace_id(
    gateway_thread: GatewayThread,
    runtime: RuntimeProcess,
    collector: Collector,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"{collector.url}/v1/traces")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    url, client = serve(gateway_thread, runtime)
    with closing(client):
        answer = httpx.get(f"{url}/traced", timeout=30)
    handed = fields(answer.json()["trace"])
    wait_for(lambda: len(collector.spans) >= 3, timeout=20, what="three spans at the collector")
    invoke = next(span for span in collector.spans if span.name == "invoke")
    assert not invoke.parent_span_id
    assert handed["Root"] == f"1-{invoke.trace_id.hex()[:8]}-{invoke.trace_id.hex()[8:]}"
    assert handed["Sampled"] == "1"  # the default sampler records a new trace
    assert collector.resources[0]["service.name"] == "kubelambda-gateway"
    gateway = gateway_thread.gateway
    assert gateway is not None and gateway.invoker.tracer is not None
    gateway.invoker.tracer.shutdown()


def test_the_gateways_log_line_about_a_failed_invocation_names_its_trace(
    gateway_thread: GatewayThread, caplog: pytest.LogCaptureFixture
) -> None:
    addresses = gateway_thread.start(
        functions=[FunctionEntry(TRACED, timeout_seconds=5)],
        routes=[HttpRoute(TRACED, "/traced")],
        settings=GatewaySettings(invoke_auth=False, hold_timeout_seconds=0.2),
    )
    caplog.set_level(logging.WARNING, logger="kubelambda.gateway.invocation")
    # No instance ever comes: the hold times out (504).
    answer = httpx.get(
        f"{addresses.public_url}/traced",
        headers={"X-Amzn-Trace-Id": f"Root={ROOT};Parent={PARENT};Sampled=1"},
        timeout=30,
    )
    assert answer.status_code == 504
    wait_for(
        lambda: any("failed" in r.getMessage() for r in caplog.records),
        timeout=10,
        what="the gateway's log line",
    )
    line = next(r.getMessage() for r in caplog.records if "failed" in r.getMessage())
    assert "default/traced" in line
    assert f"trace {ROOT}" in line
