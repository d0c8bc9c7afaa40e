"""Gateway.serve: both ports come up, and every way of stopping leaves nothing behind."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

import httpx
import pytest

from kubelambda.commands.serving import create_gateway
from kubelambda.gateway.platform import FakePlatform
from kubelambda.gateway.routing import FunctionEntry, HttpRoute, RoutingTable
from kubelambda.gateway.server import Gateway, ServingAddresses
from unit.gateway.serving import HELLO, StartGateway, wait_for

pytestmark = pytest.mark.anyio

TABLE = RoutingTable(functions=[FunctionEntry(HELLO)], routes=[HttpRoute(HELLO, "/hello")])


def refuses(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


async def serving() -> tuple[Gateway, asyncio.Task[None], ServingAddresses]:
    gateway = create_gateway(platform=FakePlatform(), routes=TABLE)
    ready: asyncio.Future[ServingAddresses] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(gateway.serve(port=0, admin_port=0, on_ready=ready.set_result))
    async with asyncio.timeout(10):
        return gateway, task, await asyncio.shield(ready)


async def start() -> tuple[asyncio.Task[None], ServingAddresses]:
    _, task, addresses = await serving()
    return task, addresses


async def test_public_and_admin_ports_serve_their_own_apps(serve: StartGateway) -> None:
    served = await serve()
    addresses = served.addresses
    assert addresses.public_port != addresses.admin_port
    assert addresses.public_url == f"http://127.0.0.1:{addresses.public_port}"
    # /metrics is not on the public port, triggers are not on the admin port
    assert (await served.client.get("/metrics")).status_code == 404
    assert (await served.admin.get("/hello")).status_code == 404
    assert (await served.admin.get("/healthz")).status_code == 200


async def test_cancelling_serve_closes_both_ports() -> None:
    task, addresses = await start()
    task.cancel()
    async with asyncio.timeout(10):
        await asyncio.gather(task, return_exceptions=True)
    assert refuses(addresses.public_port)
    assert refuses(addresses.admin_port)


@pytest.mark.parametrize(
    "stop",
    [
        pytest.param(lambda gateway: gateway.shutdown(), id="shutdown"),
        # Held through the drain, then answered as any shutdown answers them.
        pytest.param(lambda gateway: gateway.stop(drain_seconds=0.2), id="a drain's end"),
    ],
)
async def test_shutdown_answers_held_requests_503(stop: Callable[[Gateway], None]) -> None:
    gateway, task, addresses = await serving()
    async with httpx.AsyncClient(base_url=addresses.public_url, timeout=10) as client:
        held = asyncio.create_task(client.get("/hello"))
        await wait_for(lambda: (load := gateway.load().get(HELLO)) and load.queued == 1)
        stop(gateway)
        answer = await asyncio.wait_for(held, 10)
    assert answer.status_code == 503
    assert "shutting down" in answer.json()["message"]
    await asyncio.wait_for(task, 10)
    assert refuses(addresses.public_port)


async def test_a_draining_gateway_accepts_and_answers_closing_each_connection() -> None:
    gateway, task, addresses = await serving()
    async with httpx.AsyncClient(base_url=addresses.public_url, timeout=10) as client:
        before = await client.get("/nowhere")
        gateway.stop(drain_seconds=60)
        # A new connection, as kube-proxy may still open to a pod being deleted.
        async with httpx.AsyncClient(base_url=addresses.public_url, timeout=10) as late:
            during = await late.get("/nowhere")
        async with httpx.AsyncClient(base_url=addresses.admin_url, timeout=10) as admin:
            healthy = await admin.get("/healthz")
    assert before.status_code == during.status_code == 404
    assert "connection" not in before.headers
    # The client's next request opens a new connection: to a replica that stays.
    assert during.headers["connection"] == "close"
    assert healthy.status_code == 200  # readiness stays true while it serves
    assert not task.done()
    gateway.stop(drain_seconds=60)  # asked again: at once
    await asyncio.wait_for(task, 10)
    assert refuses(addresses.public_port)


async def test_a_port_in_use_fails_serve_at_once() -> None:
    task, addresses = await start()
    try:
        other = create_gateway(platform=FakePlatform(), routes=TABLE)
        with pytest.raises(OSError, match="in use"):
            await asyncio.wait_for(other.serve(port=addresses.public_port, admin_port=0), 10)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_gateways_share_a_port_with_reuse_port() -> None:
    # Each process a replica of its own, as two gateway pods are (SO_REUSEPORT).
    first = create_gateway(platform=FakePlatform(), routes=TABLE)
    ready: asyncio.Future[ServingAddresses] = asyncio.get_running_loop().create_future()
    tasks = [
        asyncio.create_task(
            first.serve(port=0, admin_port=0, on_ready=ready.set_result, reuse_port=True)
        )
    ]
    try:
        addresses = await asyncio.wait_for(asyncio.shield(ready), 10)
        second = create_gateway(platform=FakePlatform(), routes=TABLE)
        also: asyncio.Future[ServingAddresses] = asyncio.get_running_loop().create_future()
        tasks.append(
            asyncio.create_task(
                second.serve(
                    port=addresses.public_port,
                    admin_port=0,
                    on_ready=also.set_result,
                    reuse_port=True,
                )
            )
        )
        assert (await asyncio.wait_for(also, 10)).public_port == addresses.public_port
        async with httpx.AsyncClient(base_url=addresses.public_url, timeout=10) as client:
            assert (await client.get("/nowhere")).status_code == 404
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
