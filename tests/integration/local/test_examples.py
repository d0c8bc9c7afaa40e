"""Local mode serving examples/ (the README's main job), driven by real clients: httpx and boto3."""

from __future__ import annotations

import json

import pytest

from support.local import lambda_client


def test_http_trigger_cold_starts_then_answers(examples):
    first = examples.client.get("/hello", params={"name": "local"})
    assert first.status_code == 200
    assert first.json()["message"] == "Hello, local!"
    assert first.headers["content-type"] == "application/json"
    assert first.headers["server-timing"].startswith("coldstart;dur=")
    second = examples.client.get("/hello", params={"name": "again"})
    assert second.json()["message"] == "Hello, again!"
    assert "server-timing" not in second.headers


def test_http_api_maps_status_headers_cookies_and_body(examples):
    created = examples.client.post("/orders", json={"item": "book", "qty": 2})
    assert created.status_code == 201
    order = created.json()["order"]
    assert order["item"] == "book"
    assert created.headers["location"] == f"/orders/{order['id']}"
    assert created.headers["set-cookie"] == f"last-order={order['id']}"
    read = examples.client.get(f"/orders/{order['id']}")
    assert read.status_code == 200
    assert read.json()["id"] == order["id"]
    assert read.json()["store"] == "example-store"  # env from the manifest
    bad = examples.client.post(
        "/orders", content=b"not json", headers={"content-type": "text/plain"}
    )
    assert bad.status_code == 400


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/nowhere", 404), ("DELETE", "/orders/1", 405), ("GET", "/_kubelambda/x", 404)],
)
def test_unrouted_requests_get_a_json_404(examples, method, path, status):
    answer = examples.client.request(method, path)
    assert answer.status_code == status
    assert answer.headers["content-type"].startswith("application/json")
    assert answer.json()  # a body naming the problem, not a stack trace


def test_boto3_invoke_request_response(examples):
    client = lambda_client(examples.url)
    answer = client.invoke(FunctionName="hello", Payload=json.dumps({"name": "boto3"}))
    assert answer["StatusCode"] == 200
    assert "FunctionError" not in answer
    assert answer["ExecutedVersion"] == "$LATEST"
    result = json.loads(answer["Payload"].read())
    assert json.loads(result["body"])["message"] == "Hello, boto3!"


def test_boto3_invoke_function_error_and_log_tail(examples):
    client = lambda_client(examples.url)
    answer = client.invoke(
        FunctionName="default.worker",
        Payload=json.dumps({"job": 7, "fail": True}),
        LogType="Tail",
    )
    assert answer["StatusCode"] == 200
    assert answer["FunctionError"] == "Unhandled"
    error = json.loads(answer["Payload"].read())
    assert error["errorType"] == "RuntimeError"
    assert error["errorMessage"] == "job 7 cannot be done"
    import base64

    assert "REPORT RequestId" in base64.b64decode(answer["LogResult"]).decode()


def test_boto3_dry_run_and_unknown_function(examples):
    client = lambda_client(examples.url)
    assert client.invoke(FunctionName="hello", InvocationType="DryRun")["StatusCode"] == 204
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.invoke(FunctionName="no-such-function", Payload=b"{}")


def test_event_invocation_is_retried_then_dead_lettered(examples):
    client = lambda_client(examples.url)
    answer = client.invoke(
        FunctionName="worker", InvocationType="Event", Payload=json.dumps({"job": 42, "fail": True})
    )
    assert answer["StatusCode"] == 202
    line = examples.wait_for_line('"job": 42', timeout=60)
    assert "dead letter:" in line
    attempts = [x for x in examples.lines if "job 42 cannot be done" in x and "[ERROR]" in x]
    assert len(attempts) == 3  # the first try and Lambda's 2 retries


def test_event_invocation_that_succeeds_runs_once(examples):
    client = lambda_client(examples.url)
    answer = client.invoke(FunctionName="worker", InvocationType="Event", Payload=b'{"job": 9}')
    assert answer["StatusCode"] == 202
    examples.wait_for_line("did job 9", timeout=30)
