"""What the gateway's tests share: a served gateway and the types of the fixtures that make them.

The fixtures themselves live in conftest.py; test modules import these names from here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from kubelambda.gateway.gateway import Gateway, ServingAddresses
from kubelambda.gateway.platforms import FakePlatform, FunctionKey
from kubelambda.gateway.standin import StandIn

HELLO = FunctionKey("default", "hello")


@dataclass
class Served:
    """A running gateway, its fake platform and clients for both ports."""

    gateway: Gateway
    platform: FakePlatform
    addresses: ServingAddresses
    client: httpx.AsyncClient
    admin: httpx.AsyncClient
    task: asyncio.Task[None]
    extra: dict[str, Any] = field(default_factory=dict)


StartGateway = Callable[..., Awaitable[Served]]
MakeStandIn = Callable[..., Awaitable[StandIn]]


async def wait_for(condition: Callable[[], object], *, within: float = 5.0) -> None:
    """Return once `condition()` is true, looking again every few milliseconds; fail the
    test (TimeoutError) if it is still false after `within` seconds."""
    async with asyncio.timeout(within):
        # Polling: the state watched belongs to the code under test, which signals nothing.
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.002)
