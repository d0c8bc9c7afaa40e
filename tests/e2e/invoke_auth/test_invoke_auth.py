"""Scenario: the Lambda Invoke API on the cluster is closed by default. boto3 signing with an
access key (a labelled Secret in the release's namespace) granted the function invokes it;
an unsigned request, a wrong secret and a key without the grant are refused with AWS's 403s;
a Function with spec.invoke.anonymous takes anyone. An HTTP route with an API key takes the
key its Secret holds (read by name), and a rotated key once the gateway reads it again."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest
from botocore.exceptions import ClientError

from e2e.kit import FUNCTIONS_NAMESPACE, Installed, access_key, function_manifests, wait_for
from harness.cluster import Cluster
from support.aws import lambda_client

CODE = "def handler(event, context):\n    return {'echo': event}\n"
KEY, SECRET = "AKIAE2EINVOKER000001", "e2e-secret/with+chars"


def client(url: str, key: str = KEY, secret: str = SECRET) -> Any:
    return lambda_client(url, key=key, secret=secret)


def refused(call: Any) -> str:
    with pytest.raises(ClientError) as refusal:
        call()
    assert refusal.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    return str(refusal.value.response["Error"]["Code"])


def test_only_signed_granted_callers_invoke(e2e_cluster: Cluster, installed: Installed) -> None:
    closed = function_manifests("keyed", code=CODE, scaling={"minReplicas": 1})
    opened = function_manifests("open", code=CODE, scaling={"minReplicas": 1})
    opened[0]["spec"]["invoke"] = {"anonymous": True}
    e2e_cluster.apply(
        [
            *closed,
            *opened,
            access_key(
                "e2e-invoker", key=KEY, secret=SECRET, functions=f"{FUNCTIONS_NAMESPACE}/keyed"
            ),
            access_key(
                "e2e-other", key="AKIAE2EOTHER00000001", secret=SECRET, functions="elsewhere/*"
            ),
        ]
    )
    url = installed.gateway_url

    def signed_invoke() -> dict[str, Any] | None:
        try:
            answer = client(url).invoke(FunctionName="keyed", Payload=json.dumps({"n": 1}))
        except ClientError:
            return None  # the key or the function has not reached the gateway yet
        return dict(json.loads(answer["Payload"].read()))

    assert wait_for(signed_invoke, what="a signed invoke of keyed", timeout=120) == {
        "echo": {"n": 1}
    }
    assert refused(lambda: client(url, secret="wrong").invoke(FunctionName="keyed")) == (
        "InvalidSignatureException"
    )
    other = client(url, key="AKIAE2EOTHER00000001")
    assert refused(lambda: other.invoke(FunctionName="keyed")) == "AccessDeniedException"

    request = urllib.request.Request(
        f"{url}/2015-03-31/functions/keyed/invocations", data=b"{}", method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as unsigned:
        urllib.request.urlopen(request, timeout=30)
    assert unsigned.value.code == 403
    assert json.loads(unsigned.value.read())["errorType"] == "MissingAuthenticationTokenException"

    anonymous = urllib.request.Request(
        f"{url}/2015-03-31/functions/open/invocations", data=b'{"a": 2}', method="POST"
    )

    def anonymous_invoke() -> Any:
        try:
            with urllib.request.urlopen(anonymous, timeout=60) as answer:
                return json.loads(answer.read())
        except urllib.error.HTTPError:
            return None

    assert wait_for(anonymous_invoke, what="an unsigned invoke of open", timeout=120) == {
        "echo": {"a": 2}
    }


def test_an_api_key_route_takes_the_key_its_secret_holds(
    e2e_cluster: Cluster, installed: Installed
) -> None:
    objects = function_manifests("guarded", code=CODE, path="/guarded", scaling={"minReplicas": 1})
    objects[1]["spec"]["http"]["auth"] = {
        "type": "apiKey",
        "secretRef": {"name": "guarded-key", "key": "key"},
    }

    def key_secret(value: str) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "guarded-key", "namespace": FUNCTIONS_NAMESPACE},
            "stringData": {"key": value},
        }

    e2e_cluster.apply([*objects, key_secret("first-key")])
    url = f"{installed.gateway_url}/guarded"

    def status_with(key: str | None) -> int:
        request = urllib.request.Request(url, headers={"x-api-key": key} if key else {})
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                return int(answer.status)
        except urllib.error.HTTPError as refusal:
            return refusal.code

    wait_for(lambda: status_with("first-key") == 200, what="the route taking its key", timeout=120)
    assert status_with(None) == 403
    assert status_with("another-key") == 403

    e2e_cluster.apply([key_secret("second-key")])  # rotated: read again within 30 s
    wait_for(lambda: status_with("second-key") == 200, what="the rotated key", timeout=90)
    assert status_with("first-key") == 403
