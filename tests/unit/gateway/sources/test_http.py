"""HTTP Trigger routes end to end: a real gateway on loopback in front of stand-in instances."""

from __future__ import annotations

import asyncio
import json
import time

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from kubelambda.api.identity import FunctionKey
from kubelambda.gateway.platform import FakePlatform, Instance
from kubelambda.gateway.routing import FunctionEntry, HttpRoute, JwtAuthorizerConfig, RoutingTable
from kubelambda.gateway.settings import GatewaySettings
from kubelambda.gateway.sources.http import _event_json
from unit.gateway.serving import HELLO, MakeStandIn, StartGateway, raw_server, wait_for

pytestmark = pytest.mark.anyio


async def test_request_becomes_an_event_with_the_contract_headers(
    serve: StartGateway, standin: MakeStandIn
) -> None:
    instance = await standin()
    served = await serve(functions=[FunctionEntry(HELLO, timeout_seconds=7)])
    served.platform.set_instances(HELLO, [instance.instance()])
    before = time.time()
    answer = await served.client.get("/hello/world?a=1&a=2", headers={"x-thing": "yes"})
    assert answer.status_code == 200
    echoed = answer.json()
    event = echoed["event"]
    assert event["rawPath"] == "/hello/world"
    assert event["rawQueryString"] == "a=1&a=2"
    assert event["queryStringParameters"] == {"a": "1,2"}
    assert event["routeKey"] == "ANY /hello"
    assert event["headers"]["x-thing"] == "yes"
    assert event["requestContext"]["domainName"] == "127.0.0.1"
    assert event["requestContext"]["http"]["sourceIp"] == "127.0.0.1"
    request_id = event["requestContext"]["requestId"]
    assert answer.headers["apigw-requestid"] == request_id
    assert "server-timing" not in answer.headers  # nothing waited
    headers = echoed["headers"]
    assert headers["lambda-runtime-aws-request-id"] == request_id
    assert headers["lambda-runtime-invoked-function-arn"] == (
        "arn:aws:lambda:us-east-1:000000000000:function:hello"
    )
    # the deadline is the function's timeout from when it was sent
    deadline = int(headers["lambda-runtime-deadline-ms"]) / 1000
    assert before + 7 - 1 < deadline < time.time() + 7 + 1


async def test_function_response_is_mapped_back(serve: StartGateway, standin: MakeStandIn) -> None:
    instance = await standin()
    served = await serve()
    served.platform.set_instances(HELLO, [instance.instance()])
    reply = {
        "statusCode": 201,
        "headers": {"x-made": "yes", "content-length": "999", "keep-alive": "timeout=1"},
        "cookies": ["a=1", "b=2; Path=/"],
        "body": "made it",
    }
    answer = await served.client.post("/hello", json={"return": reply})
    assert answer.status_code == 201
    assert answer.headers["x-made"] == "yes"
    assert answer.headers.get_list("set-cookie") == ["a=1", "b=2; Path=/"]
    assert answer.text == "made it"
    # framing is the gateway's own: a function's content-length does not leak through
    assert answer.headers["content-length"] == str(len("made it"))
    assert "keep-alive" not in answer.headers


async def test_function_error_is_502(serve: StartGateway, standin: MakeStandIn) -> None:
    instance = await standin()
    served = await serve()
    served.platform.set_instances(HELLO, [instance.instance()])
    answer = await served.client.post("/hello", json={"raise": "boom"})
    assert answer.status_code == 502
    assert answer.json() == {"message": "Internal Server Error"}


async def test_cold_start_holds_every_request_and_answers_all(
    serve: StartGateway, standin: MakeStandIn
) -> None:
    instance = await standin(concurrency=8)
    platform = FakePlatform()

    async def start_instance(key: FunctionKey) -> None:
        await asyncio.sleep(0.1)  # the "cold start" whose length is measured below
        platform.set_instances(key, [instance.instance()])

    platform.on_wake = start_instance
    served = await serve(platform=platform)
    answers = await asyncio.gather(*(served.client.get("/hello") for _ in range(6)))
    assert [a.status_code for a in answers] == [200] * 6
    for answer in answers:
        metric, _, duration = answer.headers["server-timing"].partition(";dur=")
        assert metric == "coldstart"
        assert float(duration) >= 90
    assert platform.wakes == [HELLO]
    metrics = (await served.admin.get("/metrics")).text
    assert (
        'kubelambda_gateway_cold_starts_total{function="hello",namespace="default"} 6.0' in metrics
    )


async def test_held_queue_bound_answers_503_with_retry_after(
    serve: StartGateway, standin: MakeStandIn
) -> None:
    settings = GatewaySettings(max_queued_per_function=2, retry_after_seconds=4)
    served = await serve(settings=settings)
    held = [asyncio.create_task(served.client.get("/hello")) for _ in range(2)]
    await wait_for(lambda: (load := served.gateway.load().get(HELLO)) and load.queued == 2)
    answer = await served.client.get("/hello")
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "4"
    assert "already holds 2 requests" in answer.json()["message"]
    # the two held ones still get through once an instance is there
    instance = await standin(concurrency=2)
    served.platform.set_instances(HELLO, [instance.instance()])
    assert [(await task).status_code for task in held] == [200, 200]


async def test_hold_past_the_deadline_is_504(serve: StartGateway) -> None:
    served = await serve(settings=GatewaySettings(hold_timeout_seconds=0.2))
    answer = await served.client.get("/hello")
    assert answer.status_code == 504
    assert answer.json()["message"].startswith("no instance of default/hello became ready")


async def test_instance_that_does_not_answer_in_time_is_504(
    serve: StartGateway, standin: MakeStandIn
) -> None:
    instance = await standin()
    settings = GatewaySettings(upstream_grace_seconds=0.1)
    served = await serve(functions=[FunctionEntry(HELLO, timeout_seconds=0.2)], settings=settings)
    served.platform.set_instances(HELLO, [instance.instance()])
    answer = await served.client.post("/hello", json={"sleep": 0.6})
    assert answer.status_code == 504
    assert answer.json()["message"] == "the instance did not answer in time"


async def test_least_in_flight_never_exceeds_instance_concurrency(
    serve: StartGateway, standin: MakeStandIn
) -> None:
    first, second = await standin(concurrency=1), await standin(concurrency=1)
    served = await serve()
    served.platform.set_instances(HELLO, [first.instance(), second.instance()])
    answers = await asyncio.gather(
        *(served.client.post("/hello", json={"sleep": 0.05}) for _ in range(8))
    )
    assert [a.status_code for a in answers] == [200] * 8
    # both worked, neither ever saw two at once, neither had to refuse one
    assert len(first.received) + len(second.received) == 8
    assert first.received and second.received
    assert first.peak_in_flight == second.peak_in_flight == 1
    assert first.refused == second.refused == 0


async def test_busy_or_dead_instances_are_skipped_not_reported(
    serve: StartGateway, standin: MakeStandIn
) -> None:
    busy = await standin(concurrency=0)  # answers 429 to everything
    good = await standin(concurrency=4)
    dead = Instance(id="dead", host="127.0.0.1", port=1, concurrency=4)
    served = await serve()
    served.platform.set_instances(HELLO, [busy.instance(concurrency=4), dead, good.instance()])
    answers = await asyncio.gather(*(served.client.get("/hello") for _ in range(6)))
    assert [a.status_code for a in answers] == [200] * 6
    assert {a.json()["instance"] for a in answers} == {good.name}
    assert busy.refused >= 1


@pytest.mark.parametrize(
    ("method", "path", "status", "error_type", "message"),
    [
        ("GET", "/nowhere", 404, "ResourceNotFoundException", "no route for GET /nowhere"),
        ("GET", "/_kubelambda/nothing", 404, "ResourceNotFoundException", "are reserved"),
        ("DELETE", "/only-get", 405, "MethodNotAllowedException", "allowed: GET"),
        (
            "GET",
            "/2015-03-31/functions/hello/policy",
            404,
            "UnknownOperationException",
            "serves Invoke and",
        ),
    ],
)
async def test_bad_requests_get_json_naming_the_problem(
    serve: StartGateway, method: str, path: str, status: int, error_type: str, message: str
) -> None:
    served = await serve(
        routes=[HttpRoute(HELLO, "/only-get", methods=frozenset({"GET"}))],
    )
    answer = await served.client.request(method, path)
    assert answer.status_code == status
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["x-amzn-errortype"] == error_type
    body = answer.json()
    assert body["errorType"] == error_type
    assert message in body["message"]
    assert "Traceback" not in answer.text
    if status == 405:
        assert answer.headers["allow"] == "GET"


async def test_bodies_over_the_limit_are_413(serve: StartGateway, standin: MakeStandIn) -> None:
    instance = await standin()
    served = await serve(settings=GatewaySettings(max_body_bytes=100))
    served.platform.set_instances(HELLO, [instance.instance()])
    answer = await served.client.post("/hello", content=b"x" * 101)
    assert answer.status_code == 413
    assert answer.json()["errorType"] == "RequestTooLargeException"
    assert "over the 100 byte limit" in answer.json()["message"]

    async def chunks():  # no content-length: caught while reading
        for _ in range(3):
            yield b"y" * 60

    answer = await served.client.post("/hello", content=chunks())
    assert answer.status_code == 413
    assert (await served.client.post("/hello", content=b"x" * 100)).status_code == 200
    assert len(instance.received) == 1


async def test_api_key_routes_want_the_key(serve: StartGateway, standin: MakeStandIn) -> None:
    instance = await standin()
    served = await serve(routes=[HttpRoute(HELLO, "/hello", api_keys=frozenset({"s3cret"}))])
    served.platform.set_instances(HELLO, [instance.instance()])
    assert (await served.client.get("/hello")).status_code == 403
    wrong = await served.client.get("/hello", headers={"x-api-key": "nope"})
    assert wrong.status_code == 403
    assert wrong.json()["errorType"] == "ForbiddenException"
    assert (await served.client.get("/hello", headers={"x-api-key": "s3cret"})).status_code == 200
    assert len(instance.received) == 1


async def test_unreadable_api_key_refuses_everything(serve: StartGateway) -> None:
    served = await serve(routes=[HttpRoute(HELLO, "/hello", api_keys=frozenset())])
    answer = await served.client.get("/hello", headers={"x-api-key": ""})
    assert answer.status_code == 403


async def test_routes_are_swapped_whole(serve: StartGateway, standin: MakeStandIn) -> None:
    instance = await standin()
    served = await serve()
    served.platform.set_instances(HELLO, [instance.instance()])
    assert (await served.client.get("/hello")).status_code == 200
    served.gateway.set_routes(
        RoutingTable(functions=[FunctionEntry(HELLO)], routes=[HttpRoute(HELLO, "/bonjour")])
    )
    assert (await served.client.get("/hello")).status_code == 404
    answer = await served.client.get("/bonjour")
    assert answer.status_code == 200
    assert json.loads(answer.text)["event"]["routeKey"] == "ANY /bonjour"


async def test_a_client_that_leaves_while_held_frees_its_place(serve: StartGateway) -> None:
    served = await serve()
    port = served.addresses.public_port
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /hello HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
    await writer.drain()
    await wait_for(lambda: (load := served.gateway.load().get(HELLO)) and load.queued == 1)
    writer.close()
    await wait_for(lambda: served.gateway.load()[HELLO].queued == 0)
    metrics = (await served.admin.get("/metrics")).text
    assert 'kubelambda_gateway_requests_total{code="499",function="hello"' in metrics


async def test_jwt_routes_check_the_token_before_the_function_sees_anything(
    serve: StartGateway, standin: MakeStandIn
) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = {**RSAAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": "k1"}
    key_set = json.dumps({"keys": [jwk]}).encode()

    async def jwks(_: int) -> tuple[bytes, bool]:
        head = f"HTTP/1.1 200 OK\r\ncontent-length: {len(key_set)}\r\nconnection: close\r\n\r\n"
        return head.encode() + key_set, False

    issuer = "https://issuer.example.com"

    def token(**claims: object) -> str:
        payload = {"iss": issuer, "aud": "orders-api", "exp": int(time.time()) + 60, **claims}
        return pyjwt.encode(payload, key, algorithm="RS256", headers={"kid": "k1"})

    async with raw_server(jwks) as keys:
        instance = await standin()
        authorizer = JwtAuthorizerConfig(
            issuer=issuer,
            audience=frozenset({"orders-api"}),
            jwks_url=f"http://127.0.0.1:{keys.port}/jwks",
            scopes=frozenset({"orders:read"}),
        )
        served = await serve(routes=[HttpRoute(HELLO, "/hello", jwt=authorizer)])
        served.platform.set_instances(HELLO, [instance.instance()])

        missing = await served.client.get("/hello")
        assert (missing.status_code, missing.content) == (401, b'{"message":"Unauthorized"}')
        assert missing.headers["content-type"] == "application/json"
        assert missing.headers["www-authenticate"] == 'Bearer scope="orders:read"'

        wrong = await served.client.get(
            "/hello", headers={"authorization": f"Bearer {token(aud='billing')}"}
        )
        assert (wrong.status_code, wrong.content) == (401, b'{"message":"Unauthorized"}')
        assert wrong.headers["www-authenticate"] == (
            'Bearer scope="orders:read" error="invalid_token" '
            'error_description="the token does not have a valid audience"'
        )

        unscoped = await served.client.get(
            "/hello", headers={"authorization": f"Bearer {token(scope='profile')}"}
        )
        assert (unscoped.status_code, unscoped.content) == (403, b'{"message":"Forbidden"}')
        assert 'error="insufficient_scope"' in unscoped.headers["www-authenticate"]
        assert instance.received == []  # no refusal reached the function

        good = await served.client.get(
            "/hello", headers={"authorization": f"Bearer {token(scope='orders:read', sub='u1')}"}
        )
        assert good.status_code == 200
        context = good.json()["event"]["requestContext"]
        assert context["authorizer"]["jwt"]["claims"]["sub"] == "u1"
        assert context["authorizer"]["jwt"]["scopes"] == ["orders:read"]
        assert len(instance.received) == 1
        assert len(keys.requests) == 1  # fetched once, then cached


async def test_routes_without_an_authorizer_have_none_in_the_event(
    serve: StartGateway, standin: MakeStandIn
) -> None:
    instance = await standin()
    served = await serve()
    served.platform.set_instances(HELLO, [instance.instance()])
    answer = await served.client.get("/hello", headers={"authorization": "Bearer x.y.z"})
    assert answer.status_code == 200
    assert "authorizer" not in answer.json()["event"]["requestContext"]


async def test_an_event_orjson_refuses_is_written_by_the_json_module() -> None:
    # A lone surrogate (a JWT claim may carry one) is not UTF-8: the json module escapes it.
    event = {"requestContext": {"authorizer": {"jwt": {"claims": {"sub": "a\ud800b"}}}}}
    assert json.loads(_event_json(event)) == event
    assert _event_json({"rawPath": "/caf\u00e9"}) == '{"rawPath":"/café"}'.encode()
