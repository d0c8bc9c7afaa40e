"""When the gateway traces with OpenTelemetry (kubelambda.gateway.spans): only when an OTLP
endpoint is configured, and without loading the SDK otherwise."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from kubelambda.gateway.spans import SpanTracer, tracer_from_environment


@pytest.mark.parametrize(
    "environ",
    [
        {},
        {"OTEL_SERVICE_NAME": "gateway", "OTEL_TRACES_SAMPLER": "always_on"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "  "},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_SDK_DISABLED": "true"},
    ],
)
def test_tracing_is_off_without_an_otlp_endpoint(environ: dict[str, str]) -> None:
    assert tracer_from_environment(environ) is None


@pytest.mark.parametrize(
    "name", ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
)
def test_tracing_is_on_with_an_otlp_endpoint(name: str) -> None:
    tracer = tracer_from_environment({name: "http://127.0.0.1:9/v1/traces"})
    assert isinstance(tracer, SpanTracer)
    tracer.shutdown()


def test_a_gateway_without_tracing_never_imports_the_sdk() -> None:
    # A fresh interpreter: this one may have loaded the SDK for other tests.
    program = (
        "import sys\n"
        "from kubelambda.commands.serving import create_gateway\n"
        "from kubelambda.gateway.platform import FakePlatform\n"
        "from kubelambda.gateway.routing import RoutingTable\n"
        "from kubelambda.gateway.settings import GatewaySettings\n"
        "gateway = create_gateway(platform=FakePlatform(), routes=RoutingTable(),"
        " settings=GatewaySettings(invoke_auth=False))\n"
        "assert gateway.invoker.tracer is None\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('opentelemetry.sdk'))\n"
        "print(loaded)\n"
    )
    environ = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run(
        [sys.executable, "-c", program],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
