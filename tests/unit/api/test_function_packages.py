"""parse_function with spec.code.s3 and spec.layers: deployment packages and layers on an S3
server become S3Objects (sha256 in hex whichever form was given); refused_packages.yaml's
manifests are refused naming the field, as the CRD refuses them."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubelambda.api import SpecError, parse_function
from kubelambda.api.function import S3Object

HERE = Path(__file__).parent
CASES: list[dict[str, Any]] = yaml.safe_load((HERE / "refused_packages.yaml").read_text())
DIGEST = hashlib.sha256(b"the zip").digest()


def manifest(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kubelambda.dev/v1alpha1",
        "kind": "Function",
        "metadata": {"name": "deps", "namespace": "team-a"},
        "spec": {"runtime": "python3.12", "handler": "app.handler", **spec},
    }


def test_a_package_on_s3_is_the_code() -> None:
    function = parse_function(
        manifest(
            code={
                "s3": {
                    "endpoint": "http://minio.storage:9000",
                    "region": "eu-west-1",
                    "bucket": "code",
                    "key": "builds/app.zip",
                    "versionId": "3HL4kqtJlcpXroDTDmJ",
                    "sha256": DIGEST.hex().upper(),
                    "credentialsSecret": {"name": "minio"},
                }
            }
        )
    )

    assert function.code == S3Object(
        endpoint="http://minio.storage:9000",
        region="eu-west-1",
        bucket="code",
        key="builds/app.zip",
        version_id="3HL4kqtJlcpXroDTDmJ",
        sha256=DIGEST.hex(),
        credentials_secret="minio",
    )
    assert function.code.uri == "s3://code/builds/app.zip?versionId=3HL4kqtJlcpXroDTDmJ"
    assert function.layers == ()


def test_a_base64_sha256_as_lambda_writes_it_is_read_as_hex() -> None:
    lambda_form = base64.b64encode(DIGEST).decode()
    function = parse_function(
        manifest(code={"s3": {"bucket": "code", "key": "app.zip", "sha256": lambda_form}})
    )

    assert isinstance(function.code, S3Object)
    assert function.code.sha256 == DIGEST.hex()
    # Without an endpoint or a Secret: AWS S3, unsigned.
    assert (function.code.endpoint, function.code.credentials_secret) == (None, None)


def test_layers_keep_their_order() -> None:
    function = parse_function(
        manifest(
            code={"inline": {"files": {"app.py": ""}}},
            layers=[
                {"s3": {"bucket": "layers", "key": "deps.zip"}},
                {
                    "s3": {
                        "bucket": "layers",
                        "key": "tools.zip",
                        "credentialsSecret": {"name": "s"},
                    }
                },
            ],
        )
    )

    assert [layer.key for layer in function.layers] == ["deps.zip", "tools.zip"]
    assert function.layers[1].credentials_secret == "s"


def test_code_path_on_a_cluster_names_s3_as_an_alternative() -> None:
    with pytest.raises(SpecError) as caught:
        parse_function(manifest(code={"path": "src"}))

    assert "spec.code.s3" in str(caught.value)


def test_the_table_covers_code_and_layers() -> None:
    fields = {case["field"].split(".")[1].split("[")[0] for case in CASES}
    assert fields == {"code", "layers"}
    assert len({case["case"] for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[case["case"] for case in CASES])
def test_refused_with_the_field_named(case: dict[str, Any]) -> None:
    with pytest.raises(SpecError) as caught:
        parse_function(case["manifest"])

    messages = [p.message for p in caught.value.problems if p.path == case["field"]]
    assert messages, f"no problem at {case['field']}: {caught.value}"
    assert any(case.get("message", "") in message for message in messages), messages
