"""dispatcher/sources.py reading a Trigger's Secret through delivery/endpoints.py: a queue
Trigger's creds reach nats.connect in memory, and a Secret that does not fit, for a queue or a
kafka Trigger, is the Trigger's problem (named as the operator names it) while its poller keeps
trying. No broker: nats.connect is a stand-in, and a kafka Secret is refused before connecting."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import nats
import pytest
from nats.aio.client import RawCredentials

from kubelambda.api.function import parse_function
from kubelambda.api.identity import FunctionKey
from kubelambda.api.trigger import Trigger, parse_trigger
from kubelambda.clock import SystemClock
from kubelambda.delivery.jobs import DeliveryJob
from kubelambda.dispatcher.function_call import Outcome
from kubelambda.dispatcher.sources import EventSources
from support.manifests import inline_function
from support.waiting import wait_for_async

pytestmark = pytest.mark.anyio

CREDS = "-----BEGIN NATS USER JWT-----\neyJ0\n------END NATS USER JWT------\n"
FUNCTIONS = {
    FunctionKey("default", "orders"): parse_function(
        inline_function("orders", "def handler(event, context): pass")
    )
}
KEY = ("default", "orders-source")


def trigger(**source: Any) -> Trigger:
    return parse_trigger(
        {
            "apiVersion": "kubelambda.dev/v1alpha1",
            "kind": "Trigger",
            "metadata": {"name": KEY[1]},
            "spec": {"function": "orders", **source},
        }
    )


QUEUE = trigger(
    queue={
        "stream": "ORDERS",
        "nats": {"url": "nats://other:4222", "credentialsSecret": {"name": "n"}},
    }
)
KAFKA = trigger(
    kafka={
        "bootstrapServers": ["127.0.0.1:9"],
        "topics": ["orders"],
        "startingPosition": "LATEST",
        "auth": {"secretRef": {"name": "login"}},
    }
)


class Connects:
    """A stand-in for nats.connect that keeps what it was given and connects nowhere."""

    def __init__(self) -> None:
        self.given: list[dict[str, Any]] = []

    async def __call__(self, servers: list[str], **options: Any) -> Any:
        self.given.append(options)
        raise OSError("a unit test connects nowhere")


@pytest.fixture
def connects(monkeypatch: pytest.MonkeyPatch) -> Connects:
    stand_in = Connects()
    monkeypatch.setattr(nats, "connect", stand_in)
    return stand_in


@pytest.fixture
async def secrets() -> AsyncIterator[tuple[dict[str, dict[str, str]], EventSources]]:
    held: dict[str, dict[str, str]] = {}

    async def call(job: DeliveryJob) -> Outcome:
        raise AssertionError("nothing is consumed in these tests")

    async def admit(jobs: Any) -> bool:
        return True

    async def read(namespace: str, name: str) -> dict[str, str] | None:
        return held.get(name)

    sources = EventSources(
        call=call,
        admit=admit,
        clock=SystemClock(),
        broker=None,
        region="us-east-1",
        account_id="000000000000",
        secrets=read,
    )
    yield held, sources
    await sources.aclose()


async def test_a_queue_triggers_creds_reach_the_client_in_memory(
    connects: Connects, secrets: tuple[dict[str, dict[str, str]], EventSources]
) -> None:
    held, sources = secrets
    held["n"] = {"creds": CREDS}
    sources.start()
    sources.update(FUNCTIONS, [QUEUE])
    await wait_for_async(lambda: connects.given, seconds=5, what="a connection tried")
    credentials = connects.given[0]["user_credentials"]
    # nats-py reads a str as a file's path, a RawCredentials as the file's text: no file.
    assert isinstance(credentials, RawCredentials) and str(credentials) == CREDS


@pytest.mark.parametrize(
    ("source", "secret", "data", "problem"),
    [
        (
            QUEUE,
            "n",
            {"user": "u"},
            "Secret n (spec.queue.nats.credentialsSecret) holds none of the keys creds, token,"
            " or user and password",
        ),
        (
            KAFKA,
            "login",
            {"username": "lambda"},
            "Secret login (spec.kafka.auth.secretRef) needs both username and password for SASL",
        ),
    ],
    ids=["queue", "kafka"],
)
async def test_a_secret_that_does_not_fit_is_the_triggers_problem_and_its_poller_goes_on(
    connects: Connects,
    secrets: tuple[dict[str, dict[str, str]], EventSources],
    source: Trigger,
    secret: str,
    data: dict[str, str],
    problem: str,
) -> None:
    held, sources = secrets
    held[secret] = data
    sources.start()
    sources.update(FUNCTIONS, [source])
    # Reported by the poller (one that raised would report nothing), which then tries again.
    await wait_for_async(
        lambda: sources.problems.get(KEY) is not None, seconds=5, what="the problem reported"
    )
    assert sources.problems[KEY] == problem
    assert connects.given == []  # refused before any connection
