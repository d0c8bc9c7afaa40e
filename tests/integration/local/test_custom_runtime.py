"""kubelambda local serves a provided.al2023 function (a Go bootstrap built against aws-lambda-go,
from a code folder) through its gateway: an HTTP Trigger and the Invoke API reach it, its error
and its timeout answer as Lambda's do, and its output reaches local mode's log."""

from __future__ import annotations

import json

from integration.runtime.custom_runtimes import builds
from support.local import lambda_client

MANIFEST = """
apiVersion: kubelambda.dev/v1alpha1
kind: Function
metadata: {name: gofn}
spec:
  runtime: provided.al2023
  timeoutSeconds: 2
  code: {path: ./gofn}
---
apiVersion: kubelambda.dev/v1alpha1
kind: Trigger
metadata: {name: gofn-http}
spec: {function: gofn, http: {path: /go, methods: [POST]}}
"""


def test_local_mode_serves_a_provided_al2023_function(local_mode, tmp_path):
    builds.code_folder(tmp_path / "gofn", builds.go_bootstrap())
    local = local_mode(MANIFEST)

    # Through an HTTP Trigger: the API Gateway payload 2.0 event reaches the Go handler, whose
    # return value (no statusCode) comes back as a 200 JSON body.
    answer = local.client.post("/go", json={"ignored": True})
    assert answer.status_code == 200, local.output()
    result = answer.json()
    assert result["functionName"] == "gofn"
    assert result["env"]["LAMBDA_TASK_ROOT"] == str(tmp_path / "gofn")
    assert "_HANDLER" not in result["env"]  # none given: optional for a provided runtime
    assert result["functionArn"].endswith(":function:gofn")

    # Through the Invoke API, as boto3 calls it.
    client = lambda_client(local.url)
    invoked = client.invoke(FunctionName="gofn", Payload=json.dumps({"say": "via boto3"}))
    assert invoked["StatusCode"] == 200 and "FunctionError" not in invoked
    assert json.loads(invoked["Payload"].read())["event"]["say"] == "via boto3"
    local.wait_for_line("via boto3")  # what the bootstrap printed, in local mode's log

    failed = client.invoke(FunctionName="gofn", Payload=json.dumps({"action": "error"}))
    assert failed["FunctionError"] == "Unhandled"
    assert json.loads(failed["Payload"].read()) == {
        "errorMessage": "the function failed on purpose",
        "errorType": "errorString",
    }

    slow = client.invoke(
        FunctionName="gofn", Payload=json.dumps({"action": "sleep", "sleepMs": 5000})
    )
    assert slow["FunctionError"] == "Unhandled"
    document = json.loads(slow["Payload"].read())
    assert document["errorType"] == "Sandbox.Timedout"
    assert document["errorMessage"].endswith("Task timed out after 2.00 seconds")

    again = client.invoke(FunctionName="gofn", Payload=b"{}")
    # a fresh environment answers after the timeout
    assert "FunctionError" not in again, again["Payload"].read()
