"""commands/dispatcher.py and the broker flags it shares with the gateway (serving.py): the
stream's bounds come from the flags, the same on every process that writes the stream's
configuration, and an event is tried for as long as the stream keeps it."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from kubelambda.api.identity import FunctionKey
from kubelambda.clock import FakeClock
from kubelambda.commands.dispatcher import BacklogMetrics, build_parser, dispatcher_settings
from kubelambda.commands.gateway import build_parser as gateway_parser
from kubelambda.commands.serving import broker_settings
from kubelambda.delivery.jetstream import Backlog

STREAM_FLAGS = [
    "--nats=nats://nats.example:4222",
    "--nats-replicas=3",
    "--nats-max-age=3600",
    "--nats-max-bytes=2147483648",
    "--nats-max-message-bytes=8388608",
    "--nats-ack-wait=20",
]


def test_the_stream_settings_come_from_the_flags() -> None:
    args = build_parser().parse_args([*STREAM_FLAGS, "--function-concurrency=4", "--workers=8"])
    broker, settings = dispatcher_settings(args)
    assert broker.url == "nats://nats.example:4222"
    assert (broker.replicas, broker.max_age_seconds, broker.ack_wait_seconds) == (3, 3600.0, 20.0)
    assert (broker.max_bytes, broker.max_message_bytes) == (2 << 30, 8 << 20)
    assert broker.function_concurrency == 4
    assert settings.delivery_workers == 8
    # Tried as long as the stream keeps it: a shorter stream age would drop events silently.
    assert settings.max_event_age_seconds == 3600.0


def test_the_gateway_writes_the_same_stream_configuration() -> None:
    dispatcher, _ = dispatcher_settings(build_parser().parse_args(STREAM_FLAGS))
    gateway = broker_settings(gateway_parser().parse_args(STREAM_FLAGS))
    assert gateway is not None
    fields = ("url", "stream", "replicas", "max_age_seconds", "max_bytes", "max_message_bytes")
    assert {f: getattr(gateway, f) for f in fields} == {f: getattr(dispatcher, f) for f in fields}


def test_credentials_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBELAMBDA_NATS_URL", "nats://from-env:4222")
    monkeypatch.setenv("KUBELAMBDA_NATS_USER", "kubelambda")
    monkeypatch.setenv("KUBELAMBDA_NATS_PASSWORD", "s3cret")
    broker, _ = dispatcher_settings(build_parser().parse_args([]))
    assert (broker.url, broker.user, broker.password) == (
        "nats://from-env:4222",
        "kubelambda",
        "s3cret",
    )


@pytest.mark.parametrize("age", ["59", "21601"])
def test_an_event_age_lambda_would_refuse_is_refused(age: str) -> None:
    args = build_parser().parse_args(["--nats=nats://n:4222", f"--nats-max-age={age}"])
    with pytest.raises(SystemExit, match=r"--nats-max-age .*60 to 21600"):
        dispatcher_settings(args)


def test_without_a_broker_the_dispatcher_says_what_it_needs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("KUBELAMBDA_NATS_URL", raising=False)
    with pytest.raises(SystemExit, match="--nats URL"):
        dispatcher_settings(build_parser().parse_args([]))


def test_the_backlog_metrics_show_depth_and_oldest_age_and_fall_to_zero() -> None:
    clock = FakeClock(wall=5000.0)
    metrics = BacklogMetrics(clock)
    key = FunctionKey("metrics-test", "worker")
    labels = {"namespace": "metrics-test", "function": "worker"}

    def sample(name: str) -> float | None:
        return REGISTRY.get_sample_value(name, labels)

    metrics.show({key: Backlog(messages=7, oldest_enqueued_at=4880.0)})
    assert sample("kubelambda_async_backlog") == 7
    assert sample("kubelambda_async_oldest_event_age_seconds") == 120.0
    metrics.show({})  # the backlog emptied: zero, not the last value seen
    assert sample("kubelambda_async_backlog") == 0
    assert sample("kubelambda_async_oldest_event_age_seconds") == 0
