"""AWS SAM templates on this machine: `kubelambda local template.yaml` serves examples/sam (its
HttpApi routes, and boto3 invoking a function by its Lambda name), and `kubelambda sam convert`
writes manifests, lists what does not map and says so in its exit status."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from kubelambda.api import parse_function, parse_trigger
from support.local import LocalMode, lambda_client, start_local

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "sam" / "template.yaml"
LAYERED = """\
Transform: AWS::Serverless-2016-10-31
Resources:
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      Runtime: python3.12
      Handler: index.handler
      InlineCode: "def handler(event, context): return event"
      Layers: [arn:aws:lambda:us-east-1:123456789012:layer:shared:3]
"""
IAM_ONLY = LAYERED.replace(
    "Layers: [arn:aws:lambda:us-east-1:123456789012:layer:shared:3]",
    "Policies: [AWSLambdaBasicExecutionRole]",
)


@pytest.fixture(scope="module")
def sam_app() -> Iterator[LocalMode]:
    local = start_local(EXAMPLE)
    yield local
    local.stop()


def test_http_api_routes_answer(sam_app: LocalMode) -> None:
    created = sam_app.client.post("/orders", json={"item": "book"})
    assert created.status_code == 201
    order = created.json()
    assert order["item"] == "book"
    listing = sam_app.client.get("/orders").json()
    assert order in listing["orders"]
    assert listing["store"] == "orders-dev-us-east-1"  # !Sub of a parameter and AWS::Region
    assert sam_app.client.get(f"/orders/{order['id']}").json() == order
    assert sam_app.client.delete("/orders").status_code == 405  # only the events' methods


def test_boto3_invokes_a_function_by_its_lambda_name(sam_app: LocalMode) -> None:
    client = lambda_client(sam_app.url)
    answer = client.invoke(FunctionName="OrderHandler", Payload=b"{}")
    assert answer["StatusCode"] == 200 and "FunctionError" not in answer
    result = json.loads(answer["Payload"].read())
    assert {k: result[k] for k in ("stage", "store", "receipts", "audit")} == {
        "stage": "dev",
        "store": "orders-dev-us-east-1",
        "receipts": "sam-app-receipts",
        "audit": "arn:aws:lambda:us-east-1:000000000000:function:AuditFunction",
    }
    # The ARN the template put in the environment (!GetAtt AuditFunction.Arn) reaches it too.
    audit = client.invoke(FunctionName=result["audit"], Payload=json.dumps({"Records": []}))
    assert json.loads(audit["Payload"].read()) == {"audited": []}
    # So does the Function's own name.
    assert client.invoke(FunctionName="order-handler", Payload=b"{}")["StatusCode"] == 200


def test_local_mode_warns_of_what_does_not_map(
    local_mode: Callable[..., LocalMode],
) -> None:
    local = local_mode(LAYERED)
    local.wait_for_line(
        "not mapped: Fn.Layers: arn:aws:lambda:us-east-1:123456789012:layer:shared:3"
    )
    answer = lambda_client(local.url).invoke(FunctionName="fn", Payload=b'{"a": 1}')
    assert json.loads(answer["Payload"].read()) == {"a": 1}


def convert(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kubelambda.cli", "sam", "convert", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ.copy(),
        check=False,
    )


def test_convert_writes_manifests_the_models_take() -> None:
    done = convert(str(EXAMPLE))
    assert done.returncode == 0, done.stderr
    objects = [o for o in yaml.safe_load_all(done.stdout) if o]
    parsed = [parse_function(o) if o["kind"] == "Function" else parse_trigger(o) for o in objects]
    assert [p.name for p in parsed] == [
        "order-handler",
        "audit-function",
        "order-handler-list-orders",
        "audit-function-receipts",
        "audit-function-nightly",
    ]
    assert "ignored (2):" in done.stderr and "not mapped" not in done.stderr


def test_convert_exit_status_says_whether_everything_mapped(tmp_path: Path) -> None:
    layered, iam_only = tmp_path / "layered.yaml", tmp_path / "iam.yaml"
    layered.write_text(LAYERED)
    iam_only.write_text(IAM_ONLY)
    done = convert(str(layered))
    assert done.returncode == 3
    assert "not mapped (1):\n  Fn.Layers: arn:aws:lambda:" in done.stderr
    assert "is a published layer, which cannot be fetched" in done.stderr
    assert yaml.safe_load(done.stdout)["metadata"]["name"] == "fn"  # written all the same
    assert convert(str(iam_only)).returncode == 0
    strict = convert(str(iam_only), "--strict")
    assert strict.returncode == 3
    assert "ignored (1):\n  Fn.Policies: IAM has no meaning here" in strict.stderr


@pytest.mark.parametrize(
    ("text", "extra", "message"),
    [
        ("apiVersion: v1\nkind: ConfigMap\n", (), "is not an AWS SAM template"),
        (LAYERED, ("--parameter-overrides", "Stage=prod"), "parameter overrides name Stage"),
        (LAYERED, ("--parameter-overrides", "Stage"), "'Stage': expected KEY=VALUE"),
    ],
)
def test_convert_refuses_what_it_cannot_convert(
    tmp_path: Path, text: str, extra: tuple[str, ...], message: str
) -> None:
    path = tmp_path / "template.yaml"
    path.write_text(text)
    done = convert(str(path), *extra)
    assert done.returncode == 2
    assert done.stdout == ""
    assert message in done.stderr


def test_convert_writes_one_file_per_object(tmp_path: Path) -> None:
    done = convert(
        str(EXAMPLE),
        "-o",
        str(tmp_path / "out"),
        "-n",
        "shop",
        "--parameter-overrides",
        "ParameterKey=Stage,ParameterValue=prod",
    )
    assert done.returncode == 0, done.stderr
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert files == [
        "function-audit-function.yaml",
        "function-order-handler.yaml",
        "trigger-audit-function-nightly.yaml",
        "trigger-audit-function-receipts.yaml",
        "trigger-order-handler-list-orders.yaml",
    ]
    function = yaml.safe_load((tmp_path / "out" / "function-order-handler.yaml").read_text())
    assert function["metadata"]["namespace"] == "shop"
    assert {"name": "STAGE", "value": "prod"} in function["spec"]["env"]
