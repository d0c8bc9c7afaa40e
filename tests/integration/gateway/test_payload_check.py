"""A payload that is not JSON, through the gateway to the real runtime: refused with Lambda's
400 InvalidRequestContentException whichever refuses it. The gateway checks what it accepts
for later (Event) or only validates (DryRun); a synchronous payload is parsed once, by the
instance, whose refusal the gateway passes on as its own."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from integration.gateway.conftest import GatewayThread

# The real runtime serving test_tracing.py's function, and the gateway in front of it.
from integration.gateway.test_tracing import runtime, serve  # noqa: F401
from support.runtime import RuntimeProcess


@pytest.mark.parametrize("invocation_type", ["RequestResponse", "Event", "DryRun"])
@pytest.mark.parametrize("payload", [b"{not json", b"[" * 200_000, b'{"a": 1}{'])
def test_a_payload_that_is_not_json_is_refused_as_lambda_refuses_it(
    gateway_thread: GatewayThread,
    runtime: RuntimeProcess,  # noqa: F811
    invocation_type: str,
    payload: bytes,
) -> None:
    _, client = serve(gateway_thread, runtime)
    with pytest.raises(ClientError) as raised:
        client.invoke(FunctionName="traced", InvocationType=invocation_type, Payload=payload)
    error: Any = raised.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert error["Error"]["Code"] == "InvalidRequestContentException"
    assert error["Error"]["Message"].startswith("Could not parse request body into json: ")
    # And the function still answers what is JSON.
    answer = client.invoke(FunctionName="traced", Payload=b'{"ok": true}')
    assert answer["StatusCode"] == 200
    assert "trace" in json.loads(answer["Payload"].read())
