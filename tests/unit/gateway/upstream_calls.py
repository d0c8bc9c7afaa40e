"""What the upstream tests share (test_upstream, test_upstreamconnection): one invocation sent
through a pool to a raw server on this machine, as the invoker sends it."""

from __future__ import annotations

import asyncio

from kubelambda.gateway.upstream import UpstreamPool


async def call(
    pool: UpstreamPool, port: int, *, body: bytes = b"{}", seconds: float = 5.0
) -> bytes:
    response = await pool.request(
        host="127.0.0.1",
        port=port,
        method=b"POST",
        target=b"/2015-03-31/functions/function/invocations",
        headers=b"lambda-runtime-aws-request-id: r-1\r\n",
        body=body,
        deadline=asyncio.get_running_loop().time() + seconds,
    )
    assert response.status == 200
    return response.body
