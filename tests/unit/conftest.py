"""Fixtures for the tests of the data path (gateway, delivery, dispatcher): stand-in instances
and gateways on loopback ports.

Tests run in anyio's event loop (asyncio); the gateway, its stand-in instances and the
httpx clients all share it. Every wait is bounded by a timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from typing import Any

import httpx
import pytest

from kubelambda.commands.serving import create_gateway
from kubelambda.gateway.access import AccessKeys
from kubelambda.gateway.platform import FakePlatform
from kubelambda.gateway.routing import FunctionEntry, HttpRoute, RoutingTable
from kubelambda.gateway.server import ServingAddresses
from kubelambda.gateway.settings import GatewaySettings
from kubelambda.testing.standin import StandIn
from unit.gateway.serving import HELLO, MakeStandIn, Served, StartGateway


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def standin() -> AsyncIterator[MakeStandIn]:
    """Start stand-in instances on free loopback ports; all stop after the test."""
    started: list[StandIn] = []

    async def make(**options: Any) -> StandIn:
        options.setdefault("name", f"standin-{len(started)}")
        instance = StandIn(**options)
        await instance.start()
        started.append(instance)
        return instance

    yield make
    for instance in started:
        await instance.stop()


@pytest.fixture
async def serve() -> AsyncIterator[StartGateway]:
    """Start gateways on free loopback ports (default: `hello` at /hello); all stop after."""
    running: list[Served] = []

    async def start(
        *,
        functions: Iterable[FunctionEntry] = (FunctionEntry(HELLO),),
        routes: Iterable[HttpRoute] = (HttpRoute(HELLO, "/hello"),),
        settings: GatewaySettings | None = None,
        platform: FakePlatform | None = None,
        access_keys: AccessKeys | None = None,
    ) -> Served:
        platform = platform or FakePlatform()
        gateway = create_gateway(
            platform=platform,
            routes=RoutingTable(functions=functions, routes=routes),
            # Open unless a test asks for the Invoke API's signatures (test_invoke_api.py).
            settings=settings or GatewaySettings(invoke_auth=False),
            access_keys=access_keys,
        )
        ready: asyncio.Future[ServingAddresses] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(gateway.serve(port=0, admin_port=0, on_ready=ready.set_result))
        async with asyncio.timeout(10):
            addresses = await asyncio.shield(ready)
        served = Served(
            gateway=gateway,
            platform=platform,
            addresses=addresses,
            client=httpx.AsyncClient(base_url=addresses.public_url, timeout=10),
            admin=httpx.AsyncClient(base_url=addresses.admin_url, timeout=10),
            task=task,
        )
        running.append(served)
        return served

    yield start
    for served in running:
        served.gateway.shutdown()
        async with asyncio.timeout(15):
            await served.task
        await served.client.aclose()
        await served.admin.aclose()
