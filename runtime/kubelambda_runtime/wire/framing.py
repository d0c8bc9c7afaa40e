"""The frames the server and its workers exchange over a socket pair, and how an invocation
travels in one.

A frame is a JSON header and a raw body, each length-prefixed, so event and result bytes
pass through untouched (the server never parses them: the worker does). The server's side
is server/frameprotocol.py, the worker's worker/channel.py.
"""

from __future__ import annotations

import json
import struct
from typing import Any

from kubelambda_runtime.wire.invocation import Invocation

PREFIX = struct.Struct("!II")


def encode(header: dict[str, Any], body: bytes = b"") -> bytes:
    head = json.dumps(header, separators=(",", ":")).encode()
    return PREFIX.pack(len(head), len(body)) + head + body


def invocation_header(invocation: Invocation, *, deadline_ms: int | None) -> dict[str, Any]:
    """The header the server sends an invocation with (its body is the frame's body)."""
    header: dict[str, Any] = {"id": invocation.request_id, "tail": invocation.tail}
    if deadline_ms is not None:
        header["deadline_ms"] = deadline_ms
    for key in ("arn", "client_context", "identity", "trace_id", "tenant_id"):
        value = getattr(invocation, key)
        if value:
            header[key] = value
    return header


def invocation_of(header: dict[str, Any], body: bytes) -> Invocation:
    """An invocation as the server describes it in a frame's header."""
    return Invocation(
        request_id=header["id"],
        body=body,
        deadline_ms=header.get("deadline_ms"),
        arn=header.get("arn"),
        client_context=header.get("client_context"),
        identity=header.get("identity"),
        tail=bool(header.get("tail")),
        trace_id=header.get("trace_id"),
        tenant_id=header.get("tenant_id"),
    )
