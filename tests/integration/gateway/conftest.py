"""A gateway running in a background thread's event loop, so synchronous clients (boto3) can
call it from the test; stand-in instances or real runtime processes behind it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterable, Iterator, Sequence
from typing import Any, TypeVar

import pytest

from kubelambda.api.identity import FunctionKey
from kubelambda.commands.serving import create_gateway
from kubelambda.gateway.access import AccessKeys
from kubelambda.gateway.platform import FakePlatform, Instance
from kubelambda.gateway.routing import FunctionEntry, HttpRoute, RoutingTable
from kubelambda.gateway.server import Gateway, ServingAddresses
from kubelambda.gateway.settings import GatewaySettings
from kubelambda.testing.standin import StandIn

T = TypeVar("T")


class GatewayThread:
    """An event loop in a thread serving one gateway; the test talks to it thread-safely."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="gateway", daemon=True)
        self._thread.start()
        self.platform = FakePlatform()
        self.gateway: Gateway | None = None
        self.addresses: ServingAddresses | None = None
        self._serving: asyncio.Future[None] | None = None
        self._standins: list[StandIn] = []

    def run(self, coroutine: Coroutine[Any, Any, T], *, timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def start(
        self,
        *,
        functions: Iterable[FunctionEntry],
        routes: Iterable[HttpRoute] = (),
        settings: GatewaySettings | None = None,
        access_keys: AccessKeys | None = None,
    ) -> ServingAddresses:
        async def begin() -> ServingAddresses:
            gateway = create_gateway(
                platform=self.platform,
                routes=RoutingTable(functions=functions, routes=routes),
                settings=settings or GatewaySettings(invoke_auth=False),
                access_keys=access_keys,
            )
            ready: asyncio.Future[ServingAddresses] = self.loop.create_future()
            self._serving = asyncio.ensure_future(
                gateway.serve(port=0, admin_port=0, on_ready=ready.set_result)
            )
            self.gateway = gateway
            async with asyncio.timeout(10):
                return await asyncio.shield(ready)

        self.addresses = self.run(begin())
        return self.addresses

    def standin(self, **options: Any) -> StandIn:
        async def begin() -> StandIn:
            standin = StandIn(**options)
            await standin.start()
            return standin

        standin = self.run(begin())
        self._standins.append(standin)
        return standin

    def set_instances(self, function: FunctionKey, instances: Sequence[Instance]) -> None:
        self.loop.call_soon_threadsafe(self.platform.set_instances, function, instances)

    def stop(self) -> None:
        async def end() -> None:
            if self.gateway is not None and self._serving is not None:
                self.gateway.shutdown()
                async with asyncio.timeout(15):
                    await self._serving
            for standin in self._standins:
                await standin.stop()

        try:
            self.run(end())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()


@pytest.fixture
def gateway_thread() -> Iterator[GatewayThread]:
    running = GatewayThread()
    yield running
    running.stop()
