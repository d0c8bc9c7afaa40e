"""A warm request whose body is all in is sent at once to a free slot and answered from the
instance's callback, without a task (edge.py's `PublicApp.begin`, invocation.py's
`Invoker.start`): answered as the task answers, and tried again as the task tries when the
instance is busy or had closed the kept connection; late, it is a 504. One behind a full
instance is held without a task too (`Activator.hold`); one that must connect first (a function
new to the gateway) goes on in a task; and one the shutdown outlasts is cut off as a task is."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from kubelambda.commands.serving import create_gateway
from kubelambda.gateway.platform import FakePlatform, Instance
from kubelambda.gateway.routing import FunctionEntry, HttpRoute, RoutingTable
from kubelambda.gateway.server import ServingAddresses
from kubelambda.gateway.settings import GatewaySettings
from unit.gateway.serving import HELLO, OK, Served, StartGateway, raw_server, wait_for

pytestmark = pytest.mark.anyio

INVOKE = "/2015-03-31/functions/hello/invocations"
# A proxy answer as a function behind an HTTP Trigger returns it, and as the Invoke API passes it.
RESULT = json.dumps({"statusCode": 201, "headers": {"x-from": "fn"}, "body": "made"}).encode()
ANSWER = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (
    len(RESULT),
    RESULT,
)
BUSY = b"HTTP/1.1 429 Too Many Requests\r\ncontent-length: 0\r\n\r\n"


def request_tasks() -> int:
    """The gateway's tasks answering a request (connection.py names them "request")."""
    return sum(task.get_name() == "request" for task in asyncio.all_tasks())


def request_id(sent: bytes) -> bytes:
    for line in sent.split(b"\r\n"):
        if line.lower().startswith(b"lambda-runtime-aws-request-id:"):
            return line.split(b":", 1)[1].strip()
    raise AssertionError(f"no request id in {sent[:300]!r}")


def place(served: Served, port: int, concurrency: int = 4) -> None:
    served.platform.set_instances(HELLO, [Instance("a", "127.0.0.1", port, concurrency)])


@pytest.mark.parametrize("path", ["/hello", INVOKE], ids=["trigger", "invoke-api"])
async def test_a_warm_request_takes_no_task_and_is_answered_as_one_that_did(
    serve: StartGateway, path: str
) -> None:
    tasks_seen: list[int] = []

    async def reply(_: int) -> tuple[bytes, bool]:
        tasks_seen.append(request_tasks())  # while the request is at the instance
        return ANSWER, True

    async with raw_server(reply) as instance:
        served = await serve()
        place(served, instance.port)
        # The first is new to the gateway (its instances read, a connection made): a task.
        json_type = {"content-type": "application/json"}
        first = await served.client.post(path, content=b'{"n": 1}', headers=json_type)
        second = await served.client.post(path, content=b'{"n": 2}', headers=json_type)
    assert tasks_seen == [1, 0]
    assert first.status_code == second.status_code
    assert first.content == second.content
    ids = {"apigw-requestid", "x-amzn-requestid", "date"}
    assert {k: v for k, v in first.headers.items() if k not in ids} == {
        k: v for k, v in second.headers.items() if k not in ids
    }
    if path == INVOKE:
        assert second.status_code == 200 and second.json() == json.loads(RESULT)
    else:  # the proxy answer mapped, as API Gateway maps it
        assert (second.status_code, second.text, second.headers["x-from"]) == (201, "made", "fn")
    sent = instance.requests[1].split(b"\r\n\r\n", 1)[1]
    assert (sent if path == INVOKE else json.loads(sent)["body"].encode()) == b'{"n": 2}'


async def test_an_instance_that_answers_a_warm_request_429_gets_it_again_once_free(
    serve: StartGateway,
) -> None:
    async def reply(count: int) -> tuple[bytes, bool]:
        return (BUSY if count == 2 else OK), True

    async with raw_server(reply) as instance:
        served = await serve()
        place(served, instance.port)
        assert (await served.client.post(INVOKE, json={})).status_code == 200
        answer = await served.client.post(INVOKE, json={})
    assert answer.status_code == 200  # the 429 never reaches the client
    assert len(instance.requests) == 3
    # The same invocation sent again, once the instance's short pause (its 429) was over.
    assert request_id(instance.requests[1]) == request_id(instance.requests[2])
    assert answer.headers["server-timing"].startswith("queue;dur=")


async def test_a_kept_connection_the_instance_closed_unanswered_is_replaced(
    serve: StartGateway,
) -> None:
    async def reply(count: int) -> tuple[bytes, bool]:
        return (b"", False) if count == 2 else (OK, True)  # 2: read, then closed unanswered

    async with raw_server(reply) as instance:
        served = await serve()
        place(served, instance.port)
        assert (await served.client.post(INVOKE, json={})).status_code == 200
        answer = await served.client.post(INVOKE, json={})
    assert answer.status_code == 200
    assert len(instance.requests) == 3 and instance.connections == 2
    assert request_id(instance.requests[1]) == request_id(instance.requests[2])


async def test_a_warm_request_the_instance_answers_late_is_a_504_and_frees_its_slot(
    serve: StartGateway,
) -> None:
    async def reply(count: int) -> tuple[bytes, bool]:
        if count == 2:
            await asyncio.sleep(1)
        return OK, True

    async with raw_server(reply) as instance:
        served = await serve(
            functions=[FunctionEntry(HELLO, timeout_seconds=0.1)],
            settings=GatewaySettings(invoke_auth=False, upstream_grace_seconds=0.1),
        )
        place(served, instance.port, concurrency=1)
        assert (await served.client.post(INVOKE, json={})).status_code == 200
        late = await served.client.post(INVOKE, json={})
        after = await served.client.post(INVOKE, json={})
    assert (late.status_code, late.headers["x-amzn-errortype"]) == (504, "ServiceException")
    assert after.status_code == 200  # the one slot came back


async def test_a_request_behind_a_full_instance_is_held_without_a_task_then_answered(
    serve: StartGateway,
) -> None:
    release = asyncio.Event()

    async def reply(count: int) -> tuple[bytes, bool]:
        if count == 2:
            await release.wait()
        return OK, True

    async with raw_server(reply) as instance:
        served = await serve()
        place(served, instance.port, concurrency=1)
        assert (await served.client.post(INVOKE, json={})).status_code == 200
        busy = asyncio.create_task(served.client.post(INVOKE, json={}))
        await wait_for(lambda: len(instance.requests) == 2)
        held = asyncio.create_task(served.client.post(INVOKE, json={}))
        await wait_for(lambda: served.gateway.load()[HELLO].queued == 1)
        assert request_tasks() == 0  # neither the busy one nor the held one (Activator.hold)
        release.set()
        answers = await asyncio.gather(busy, held)
    assert [a.status_code for a in answers] == [200, 200]
    assert "server-timing" not in answers[0].headers
    assert answers[1].headers["server-timing"].startswith("queue;dur=")


async def test_nothing_behind_an_answer_that_closed_the_connection_is_served(
    serve: StartGateway,
) -> None:
    async def reply(_: int) -> tuple[bytes, bool]:
        return OK, True

    async with raw_server(reply) as instance:
        served = await serve()
        place(served, instance.port)
        served.gateway.stop(drain_seconds=30)  # draining: every answer closes its connection
        reader, writer = await asyncio.open_connection(
            served.addresses.public_host, served.addresses.public_port
        )
        # One write: a request answered at once (no route), which closes, and one behind it.
        writer.write(
            b"GET /nowhere HTTP/1.1\r\nhost: x\r\n\r\nGET /hello HTTP/1.1\r\nhost: x\r\n\r\n"
        )
        answers = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        await asyncio.sleep(0.1)  # time for a request that should not have started
    assert answers.startswith(b"HTTP/1.1 404 ")
    assert answers.count(b"HTTP/1.1 ") == 1
    assert instance.requests == []


async def test_a_warm_request_the_shutdown_outlasts_is_cut_off_as_a_task_is() -> None:
    never = asyncio.Event()

    async def reply(count: int) -> tuple[bytes, bool]:
        if count == 2:
            await never.wait()
        return OK, True

    async with raw_server(reply) as instance:
        platform = FakePlatform()
        gateway = create_gateway(
            platform=platform,
            routes=RoutingTable(functions=[FunctionEntry(HELLO)], routes=[HttpRoute(HELLO, "/h")]),
            settings=GatewaySettings(invoke_auth=False),
        )
        platform.set_instances(HELLO, [Instance("a", "127.0.0.1", instance.port, 4)])
        ready: asyncio.Future[ServingAddresses] = asyncio.get_running_loop().create_future()
        serving = asyncio.create_task(
            gateway.serve(port=0, admin_port=0, on_ready=ready.set_result, graceful_seconds=1)
        )
        addresses = await asyncio.wait_for(asyncio.shield(ready), 10)
        async with httpx.AsyncClient(base_url=addresses.public_url, timeout=30) as client:
            assert (await client.post(INVOKE, json={})).status_code == 200
            stuck = asyncio.create_task(client.post(INVOKE, json={}))
            await wait_for(lambda: len(instance.requests) == 2)
            assert request_tasks() == 0  # on the warm path
            gateway.shutdown()
            # uvicorn waits its graceful second, then cancels what is left: the exchange
            # closes the client's connection, as a task's cancellation does.
            with pytest.raises(httpx.TransportError):
                await asyncio.wait_for(stuck, 10)
            await asyncio.wait_for(serving, 10)
        never.set()
