"""boto3's `lambda` client, pointed at the gateway with endpoint_url, works as against AWS."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from integration.gateway.conftest import GatewayThread
from kubelambda.api.identity import FunctionKey
from kubelambda.gateway.access import AccessKey, StaticAccessKeys
from kubelambda.gateway.routing import FunctionEntry
from kubelambda.gateway.settings import GatewaySettings
from kubelambda.testing.standin import StandIn
from support.aws import lambda_client as signed_client
from support.waiting import wait_for

HELLO = FunctionKey("default", "hello")
TEAM = FunctionKey("team", "worker")


@pytest.fixture
def served(gateway_thread: GatewayThread) -> Iterator[tuple[Any, StandIn, GatewayThread]]:
    instance = gateway_thread.standin(name="instance", concurrency=4)
    addresses = gateway_thread.start(
        functions=[FunctionEntry(HELLO), FunctionEntry(TEAM)],
        settings=GatewaySettings(delivery_queue_size=100, invoke_auth=False),
    )
    gateway_thread.set_instances(HELLO, [instance.instance()])
    gateway_thread.set_instances(TEAM, [instance.instance()])
    # no retries: throttling answers would otherwise be retried with backoff, hiding them
    client = signed_client(addresses.public_url)
    yield client, instance, gateway_thread
    client.close()


def payload(answer: dict[str, Any]) -> Any:
    return json.loads(answer["Payload"].read())


def test_request_response(served: tuple[Any, StandIn, GatewayThread]) -> None:
    client, instance, _ = served
    answer = client.invoke(FunctionName="hello", Payload=json.dumps({"return": {"ok": True}}))
    assert answer["StatusCode"] == 200
    assert answer["ExecutedVersion"] == "$LATEST"
    assert "FunctionError" not in answer
    assert payload(answer) == {"ok": True}
    request_id = answer["ResponseMetadata"]["RequestId"]
    assert instance.received[-1].headers["lambda-runtime-aws-request-id"] == request_id


def test_function_error_log_tail_and_client_context(
    served: tuple[Any, StandIn, GatewayThread],
) -> None:
    client, instance, _ = served
    context = base64.b64encode(json.dumps({"custom": {"who": "test"}}).encode()).decode()
    answer = client.invoke(
        FunctionName="hello",
        Payload=json.dumps({"raise": "it broke"}),
        LogType="Tail",
        ClientContext=context,
    )
    assert answer["StatusCode"] == 200
    assert answer["FunctionError"] == "Unhandled"
    assert payload(answer)["errorMessage"] == "it broke"
    assert "START RequestId:" in base64.b64decode(answer["LogResult"]).decode()
    assert instance.received[-1].headers["lambda-runtime-client-context"] == context


@pytest.mark.parametrize(
    ("name", "qualifier"),
    [
        ("team.worker", None),
        ("arn:aws:lambda:us-east-1:000000000000:function:team.worker", None),
        ("arn:aws:lambda:us-east-1:000000000000:function:team.worker:$LATEST", None),
        ("team.worker", "$LATEST"),
    ],
)
def test_function_name_forms(
    served: tuple[Any, StandIn, GatewayThread], name: str, qualifier: str | None
) -> None:
    client, _, _ = served
    extra = {"Qualifier": qualifier} if qualifier else {}
    answer = client.invoke(FunctionName=name, Payload=b'{"return": 1}', **extra)
    assert payload(answer) == 1


def test_event_and_dry_run(served: tuple[Any, StandIn, GatewayThread]) -> None:
    client, instance, _ = served
    dry = client.invoke(FunctionName="hello", InvocationType="DryRun", Payload=b"{}")
    assert dry["StatusCode"] == 204
    assert instance.received == []
    event = client.invoke(FunctionName="hello", InvocationType="Event", Payload=b'{"job": 9}')
    assert event["StatusCode"] == 202
    wait_for(lambda: instance.received, timeout=10, what="the event's delivery")
    assert instance.received[0].event == {"job": 9}


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"FunctionName": "missing"}, "ResourceNotFoundException"),
        ({"FunctionName": "hello", "Qualifier": "7"}, "ResourceNotFoundException"),
        ({"FunctionName": "hello", "Payload": b"{not json"}, "InvalidRequestContentException"),
        (
            {
                "FunctionName": "hello",
                "InvocationType": "Event",
                "Payload": b"[" + b"1," * 140_000 + b"1]",
            },
            "RequestTooLargeException",
        ),
    ],
)
def test_errors_are_the_sdk_exceptions(
    served: tuple[Any, StandIn, GatewayThread], kwargs: dict[str, Any], error: str
) -> None:
    client, instance, _ = served
    with pytest.raises(getattr(client.exceptions, error)) as caught:
        client.invoke(**kwargs)
    assert caught.value.response["Error"]["Code"] == error
    assert caught.value.response["Error"]["Message"]
    assert instance.received == []


def test_throttled_event_queue_is_too_many_requests(gateway_thread: GatewayThread) -> None:
    addresses = gateway_thread.start(
        functions=[FunctionEntry(HELLO)],
        settings=GatewaySettings(delivery_queue_size=1, delivery_workers=0, invoke_auth=False),
    )
    client = signed_client(addresses.public_url)
    client.invoke(FunctionName="hello", InvocationType="Event", Payload=b"{}")
    with pytest.raises(client.exceptions.TooManyRequestsException):
        client.invoke(FunctionName="hello", InvocationType="Event", Payload=b"{}")
    client.close()


# --- closed by default: signed, authorised callers only ------------------------------------

KEY, SECRET = "AKIAKUBELAMBDATEST01", "s3cr3t/with+chars"
OPEN = FunctionKey("default", "open")


@pytest.fixture
def keyed(gateway_thread: GatewayThread) -> tuple[str, StandIn]:
    """A gateway that requires SigV4 on the Invoke API, with one key for default/* only."""
    instance = gateway_thread.standin(name="instance", concurrency=4)
    addresses = gateway_thread.start(
        functions=[
            FunctionEntry(HELLO),
            FunctionEntry(TEAM),
            FunctionEntry(OPEN, anonymous_invoke=True),
        ],
        settings=GatewaySettings(invoke_auth=True),
        access_keys=StaticAccessKeys([AccessKey(id=KEY, secret=SECRET, grants=("default/*",))]),
    )
    for function in (HELLO, TEAM, OPEN):
        gateway_thread.set_instances(function, [instance.instance()])
    return addresses.public_url, instance


def lambda_client(url: str, key: str = KEY, secret: str = SECRET) -> Any:
    return signed_client(url, key=key, secret=secret)


def refusal(call: Any) -> tuple[int, str, str]:
    with pytest.raises(ClientError) as refused:
        call()
    error = refused.value.response
    return (
        error["ResponseMetadata"]["HTTPStatusCode"],
        error["Error"]["Code"],
        error["Error"]["Message"],
    )


def test_a_signed_caller_with_a_grant_invokes(keyed: tuple[str, StandIn]) -> None:
    url, _ = keyed
    client = lambda_client(url)
    for invocation_type, status in (("RequestResponse", 200), ("Event", 202), ("DryRun", 204)):
        answer = client.invoke(FunctionName="hello", InvocationType=invocation_type, Payload=b"{}")
        assert answer["StatusCode"] == status
    arn = "arn:aws:lambda:us-east-1:000000000000:function:hello"
    assert client.invoke(FunctionName=arn, Qualifier="$LATEST", Payload=b"{}")["StatusCode"] == 200


@pytest.mark.parametrize(
    ("key", "secret", "code"),
    [
        ("AKIANOSUCHKEY0000000", SECRET, "UnrecognizedClientException"),
        (KEY, "the wrong secret", "InvalidSignatureException"),
    ],
    ids=["unknown-key", "wrong-secret"],
)
def test_a_bad_signature_is_refused(
    keyed: tuple[str, StandIn], key: str, secret: str, code: str
) -> None:
    url, instance = keyed
    status, error, _ = refusal(lambda: lambda_client(url, key, secret).invoke(FunctionName="hello"))
    assert (status, error) == (403, code)
    assert instance.received == []


def test_a_key_invokes_only_what_it_was_granted(keyed: tuple[str, StandIn]) -> None:
    url, instance = keyed
    status, error, message = refusal(lambda: lambda_client(url).invoke(FunctionName="team.worker"))
    assert (status, error) == (403, "AccessDeniedException")
    assert "not authorized to perform: lambda:InvokeFunction" in message
    assert "function:team.worker" in message
    assert instance.received == []


def test_an_unsigned_request_is_refused_without_saying_whether_the_function_exists(
    keyed: tuple[str, StandIn],
) -> None:
    url, instance = keyed
    with httpx.Client(base_url=url) as client:
        for name in ("hello", "nosuch"):
            answer = client.post(f"/2015-03-31/functions/{name}/invocations", content=b"{}")
            assert answer.status_code == 403
            assert answer.json()["errorType"] == "MissingAuthenticationTokenException"
        # ...while a function that opted in takes anyone.
        answer = client.post("/2015-03-31/functions/open/invocations", json={"return": 1})
        assert answer.status_code == 200
    assert len(instance.received) == 1


def test_a_signed_caller_learns_a_function_is_missing(keyed: tuple[str, StandIn]) -> None:
    url, _ = keyed
    status, error, _ = refusal(lambda: lambda_client(url).invoke(FunctionName="nosuch"))
    assert (status, error) == (404, "ResourceNotFoundException")


def aws_cli(url: str, tmp_path: Path, *, secret: str | None) -> subprocess.CompletedProcess[str]:
    """`aws lambda invoke` as a user types it (aws CLI v1: the payload is sent as given), with
    credentials in the environment or none."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_DEFAULT_REGION="us-east-1", AWS_CONFIG_FILE=str(tmp_path / "none"))
    env["AWS_SHARED_CREDENTIALS_FILE"] = str(tmp_path / "none")
    if secret is not None:
        env.update(AWS_ACCESS_KEY_ID=KEY, AWS_SECRET_ACCESS_KEY=secret)
    aws = Path(sys.executable).with_name("aws")
    assert aws.exists(), f"{aws} is missing: scripts/setup installs awscli (the dev extra)"
    return subprocess.run(
        [
            str(aws),
            "lambda",
            "invoke",
            "--endpoint-url",
            url,
            "--function-name",
            "hello",
            "--payload",
            '{"from": "cli"}',
            *(["--no-sign-request"] if secret is None else []),
            str(tmp_path / "out.json"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_the_aws_cli_invokes_with_credentials_and_is_refused_without(
    keyed: tuple[str, StandIn], tmp_path: Path
) -> None:
    url, instance = keyed
    done = aws_cli(url, tmp_path, secret=SECRET)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["StatusCode"] == 200
    assert [r.event for r in instance.received] == [{"from": "cli"}]
    for secret in ("the wrong secret", None):
        refused = aws_cli(url, tmp_path, secret=secret)
        assert refused.returncode != 0
        expected = "InvalidSignatureException" if secret else "MissingAuthenticationToken"
        assert expected in refused.stderr, refused.stderr
    assert len(instance.received) == 1
