"""LambdaContext and the parsing of what callers send in headers."""

from __future__ import annotations

import base64
import json
import time

import pytest

from kubelambda_runtime.worker.context import LambdaContext, parse_client_context, parse_identity


def make(deadline_ms: int) -> LambdaContext:
    return LambdaContext(
        function_name="fn",
        function_version="$LATEST",
        invoked_function_arn="arn:aws:lambda:us-east-1:000000000000:function:fn",
        memory_limit_in_mb=512,
        aws_request_id="id-1",
        log_group_name="/aws/lambda/fn",
        log_stream_name="2026/01/01/[$LATEST]abc",
        deadline_ms=deadline_ms,
    )


def test_memory_is_a_string_and_identity_is_empty_not_none():
    context = make(int(time.time() * 1000) + 1000)
    assert context.memory_limit_in_mb == "512"
    assert context.identity.cognito_identity_id is None
    assert context.identity.cognito_identity_pool_id is None
    assert context.client_context is None
    assert context.tenant_id is None


@pytest.mark.parametrize(("offset_ms", "low", "high"), [(1500, 1000, 1500), (-5000, 0, 0)])
def test_remaining_time_counts_down_to_zero_never_below(offset_ms, low, high):
    context = make(int(time.time() * 1000) + offset_ms)
    assert low <= context.get_remaining_time_in_millis() <= high


def test_client_context_from_base64_json():
    encoded = base64.b64encode(
        json.dumps(
            {
                "client": {"installation_id": "i", "app_title": "t"},
                "custom": {"a": 1},
                "env": {"b": 2},
            }
        ).encode()
    ).decode()
    parsed = parse_client_context(encoded)
    assert parsed is not None
    assert parsed.client is not None
    assert (parsed.client.installation_id, parsed.client.app_title) == ("i", "t")
    assert parsed.client.app_version_code is None
    assert parsed.custom == {"a": 1}
    assert parsed.env == {"b": 2}


@pytest.mark.parametrize("encoded", [None, "", "%%%not-base64", base64.b64encode(b"[1]").decode()])
def test_client_context_absent_or_unusable_is_none(encoded):
    assert parse_client_context(encoded) is None


@pytest.mark.parametrize(
    ("encoded", "expected"),
    [
        ('{"cognitoIdentityId": "a", "cognitoIdentityPoolId": "b"}', ("a", "b")),
        ("not json", (None, None)),
        (None, (None, None)),
    ],
)
def test_identity(encoded, expected):
    identity = parse_identity(encoded)
    assert (identity.cognito_identity_id, identity.cognito_identity_pool_id) == expected


def test_repr_names_the_request():
    assert "aws_request_id=id-1" in repr(make(0))
