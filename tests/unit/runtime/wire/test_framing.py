"""Frames: an invocation the server describes in a frame is the one the worker reads back."""

from __future__ import annotations

import pytest

from kubelambda_runtime.wire import framing
from kubelambda_runtime.wire.invocation import Invocation


@pytest.mark.parametrize(
    "invocation",
    [
        Invocation(request_id="a", body=b"{}"),
        Invocation(
            request_id="b",
            body=b'{"x": 1}',
            deadline_ms=1_700_000_000_000,
            arn="arn:aws:lambda:us-east-1:000000000000:function:f",
            client_context="e30=",
            identity='{"cognitoIdentityId": "i"}',
            tail=True,
        ),
    ],
)
def test_an_invocation_crosses_in_a_frame_header(invocation: Invocation):
    header = framing.invocation_header(invocation, deadline_ms=invocation.deadline_ms)
    assert framing.invocation_of(header, invocation.body) == invocation
