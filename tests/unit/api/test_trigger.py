"""parse_trigger: the valid examples become fully defaulted Triggers."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubelambda.api import (
    BucketSource,
    DeadLetter,
    Delivery,
    HttpAuth,
    HttpSource,
    S3Source,
    SecretKeyRef,
    SpecError,
    Trigger,
    parse_trigger,
)
from kubelambda.api.delivery import Destination
from kubelambda.api.streams import (
    Batching,
    KafkaAuth,
    KafkaSource,
    NatsConnection,
    QueueSource,
)
from kubelambda.api.trigger import JwtAuth

HERE = Path(__file__).parent
VALID = {
    doc["metadata"]["name"]: doc
    for doc in yaml.safe_load_all((HERE / "valid.yaml").read_text())
    if doc["kind"] == "Trigger"
}

EXPECTED = {
    "hello-http": Trigger(
        name="hello-http",
        namespace="default",
        function="hello",
        source=HttpSource(path="/hello", methods=("ANY",), host=None, auth=HttpAuth("none")),
        delivery=None,
    ),
    "api.v1": Trigger(
        name="api.v1",
        namespace="team-a",
        function="everything",
        source=HttpSource(
            path="/api/v1/.well-known/",
            methods=("GET", "POST"),
            host="api.example.com",
            auth=HttpAuth("apiKey", SecretKeyRef("api-keys", "everything")),
        ),
        delivery=None,
    ),
    "root": Trigger(
        name="root",
        namespace="default",
        function="hello",
        source=HttpSource(path="/"),
        delivery=None,
    ),
    "photos": Trigger(
        name="photos",
        namespace="default",
        function="hello",
        source=BucketSource(
            bucket="photos", events=("s3:ObjectCreated:*",), prefix="", suffix="", source=None
        ),
        delivery=None,
    ),
    "thumbnails": Trigger(
        name="thumbnails",
        namespace="default",
        function="hello",
        source=BucketSource(
            bucket="my.photos-2024",
            events=("s3:ObjectCreated:Put", "s3:ObjectRemoved:*"),
            prefix="uploads/",
            suffix=".jpg",
            source=S3Source(
                endpoint="http://minio.storage:9000",
                credentials_secret="minio-credentials",
                region="us-east-1",
            ),
        ),
        # Set on the Trigger, so it replaces the Function's; backoff takes its default.
        delivery=Delivery(
            retries=1,
            backoff_seconds=60,
            dead_letter=DeadLetter(url="http://dlq.default.svc:8080/events"),
        ),
    ),
    # SQS's batch of 10 and no window; a queue delivers what is waiting, and redrives after 3.
    "orders-queue": Trigger(
        name="orders-queue",
        namespace="default",
        function="hello",
        source=QueueSource(
            stream="ORDERS",
            subject=None,
            nats=None,
            batching=Batching(
                batch_size=10,
                window_seconds=0.0,
                starting_position="TRIM_HORIZON",
                starting_position_timestamp=None,
                maximum_concurrency=None,
                function_response_types=(),
                filters=(),
            ),
            max_receive_count=3,
        ),
        delivery=None,
    ),
    "orders-queue-everything": Trigger(
        name="orders-queue-everything",
        namespace="team-a",
        function="everything",
        source=QueueSource(
            stream="ORDERS_v2-eu",
            subject="orders.*.>",
            nats=NatsConnection(url="tls://nats.example:4222", credentials_secret="my-nats"),
            batching=Batching(
                batch_size=500,
                window_seconds=5.0,
                starting_position="AT_TIMESTAMP",
                starting_position_timestamp=datetime(2026, 12, 1, 0, 0, tzinfo=UTC),
                maximum_concurrency=2,
                function_response_types=("ReportBatchItemFailures",),
                filters=(
                    '{"body": {"kind": ["order"]}}',
                    '{"attributes": {"ApproximateReceiveCount": ["1"]}}\n',
                ),
            ),
            max_receive_count=5,
        ),
        delivery=Delivery(on_failure=Destination(subject="orders.failed")),
    ),
    # Lambda's Kafka defaults: batches of 100 within 500 ms, retried without end; one consumer
    # group per Trigger.
    "orders-kafka": Trigger(
        name="orders-kafka",
        namespace="default",
        function="hello",
        source=KafkaSource(
            bootstrap_servers=("kafka-0.kafka:9092",),
            topics=("orders",),
            consumer_group="kubelambda.default.orders-kafka",
            batching=Batching(batch_size=100, window_seconds=0.5, starting_position="LATEST"),
            auth=KafkaAuth(secret=None, tls=False),
            maximum_retry_attempts=-1,
        ),
        delivery=None,
    ),
    "orders-kafka-everything": Trigger(
        name="orders-kafka-everything",
        namespace="team-a",
        function="everything",
        source=KafkaSource(
            bootstrap_servers=("kafka-0.kafka.svc:9093", "10.0.0.7:65535"),
            topics=("orders", "refunds.v1"),
            consumer_group="orders-fn",
            batching=Batching(
                batch_size=1000,
                window_seconds=0.0,
                starting_position="TRIM_HORIZON",
                maximum_concurrency=1,
                function_response_types=("ReportBatchItemFailures",),
                filters=('{"value": {"kind": ["refund"]}}',),
            ),
            auth=KafkaAuth(secret="kafka-client", tls=True),
            maximum_retry_attempts=3,
        ),
        delivery=Delivery(dead_letter=DeadLetter(function="failures")),
    ),
}


def test_every_valid_trigger_has_an_expectation() -> None:
    assert set(VALID) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_valid_trigger_parses_with_defaults(name: str) -> None:
    assert parse_trigger(VALID[name]) == EXPECTED[name]


@pytest.mark.parametrize(
    ("methods", "method", "allowed"),
    [(("ANY",), "PATCH", True), (("GET", "POST"), "post", True), (("GET",), "DELETE", False)],
)
def test_http_source_allows_its_methods(
    methods: tuple[str, ...], method: str, allowed: bool
) -> None:
    assert HttpSource(path="/", methods=methods).allows(method) is allowed


def test_all_problems_are_reported_together() -> None:
    obj = {
        "apiVersion": "kubelambda.dev/v1alpha1",
        "kind": "Trigger",
        "metadata": {"name": "t"},
        "spec": {"http": {"path": "nope", "methods": ["ANY", "GET"]}, "delivery": {}},
    }
    with pytest.raises(SpecError) as caught:
        parse_trigger(obj)
    assert set(caught.value.paths) == {
        "spec.function",
        "spec.http.path",
        "spec.http.methods",
        "spec.delivery",
    }


def jwt_trigger(auth: dict[str, object]) -> dict[str, object]:
    return {
        "apiVersion": "kubelambda.dev/v1alpha1",
        "kind": "Trigger",
        "metadata": {"name": "orders", "namespace": "shop"},
        "spec": {"function": "orders", "http": {"path": "/orders", "auth": auth}},
    }


@pytest.mark.parametrize(
    ("jwt", "expected"),
    [
        (
            {"issuer": "https://issuer.example.com", "audience": ["orders-api"]},
            JwtAuth(issuer="https://issuer.example.com", audience=("orders-api",)),
        ),
        (
            {
                "issuer": "http://127.0.0.1:8443/realm",
                "audience": ["a", "b"],
                "jwksUrl": "http://127.0.0.1:8443/keys",
                "scopes": ["orders:read", "orders:write"],
                "identitySource": "$request.querystring.access_token",
            },
            JwtAuth(
                issuer="http://127.0.0.1:8443/realm",
                audience=("a", "b"),
                jwks_url="http://127.0.0.1:8443/keys",
                scopes=("orders:read", "orders:write"),
                identity_source="$request.querystring.access_token",
            ),
        ),
    ],
    ids=["defaults", "everything-set"],
)
def test_jwt_auth_parses_with_defaults(jwt: dict[str, object], expected: JwtAuth) -> None:
    trigger = parse_trigger(jwt_trigger({"type": "jwt", "jwt": jwt}))
    assert isinstance(trigger.source, HttpSource)
    assert trigger.source.auth == HttpAuth("jwt", jwt=expected)


def test_jwt_auth_reports_every_problem_of_its_block() -> None:
    obj = jwt_trigger(
        {
            "type": "jwt",
            "jwt": {"audience": [], "identitySource": "Authorization", "extra": 1},
        }
    )
    with pytest.raises(SpecError) as caught:
        parse_trigger(obj)
    assert set(caught.value.paths) == {
        "spec.http.auth.jwt.issuer",
        "spec.http.auth.jwt.audience",
        "spec.http.auth.jwt.identitySource",
        "spec.http.auth.jwt.extra",
    }


def stream_trigger(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kubelambda.dev/v1alpha1",
        "kind": "Trigger",
        "metadata": {"name": "orders", "namespace": "shop"},
        "spec": {"function": "orders", **spec},
    }


KAFKA: dict[str, Any] = {
    "bootstrapServers": ["kafka:9092"],
    "topics": ["orders"],
    "startingPosition": "LATEST",
}


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ('{"body": {"kind": ["order"}}', "the pattern is not JSON"),
        ("{body: order}", "the pattern is not JSON"),
        ('{"body": {"amount": [{"numeric": [">", NaN]}]}}', "NaN"),
        ('{"body": {"amount": [{"numeric": [">"]}]}}', '"numeric" needs an operator and a number'),
        ('{"body": {"kind": "order"}}', "body.kind: must be a list of values or matchers"),
    ],
    ids=["mismatched-brackets", "unquoted-names", "nan", "numeric-alone", "bare-value"],
)
@pytest.mark.parametrize("kind", ["queue", "kafka"])
def test_a_filter_pattern_lambda_refuses_is_refused_by_the_models(
    kind: str, pattern: str, message: str
) -> None:
    """The CRD checks only a pattern's braces (CEL cannot parse JSON): the models, which the
    controller runs, name the filter and what is wrong with it."""
    source: dict[str, Any] = {"stream": "ORDERS"} if kind == "queue" else dict(KAFKA)
    source["filterCriteria"] = {"filters": [{"pattern": '{"a": [1]}'}, {"pattern": pattern}]}
    with pytest.raises(SpecError) as caught:
        parse_trigger(stream_trigger(**{kind: source}))
    [problem] = caught.value.problems
    assert problem.path == f"spec.{kind}.filterCriteria.filters[1].pattern"
    assert problem.message.startswith("is not a filter pattern Lambda accepts: ")
    assert message in problem.message


def test_a_filter_pattern_longer_than_lambdas_4096_characters_is_refused() -> None:
    pattern = '{"body": "' + "x" * 4090 + '"}'
    queue = {"stream": "ORDERS", "filterCriteria": {"filters": [{"pattern": pattern}]}}
    with pytest.raises(SpecError) as caught:
        parse_trigger(stream_trigger(queue=queue))
    assert caught.value.paths == ("spec.queue.filterCriteria.filters[0].pattern",)
    assert "at most 4096 characters" in str(caught.value)


@pytest.mark.parametrize(
    ("batch", "window", "refused"),
    [(10, 0, False), (11, 0, True), (11, 1, False), (10000, 300, False)],
)
def test_a_queue_batch_above_ten_needs_a_window_as_on_lambda(
    batch: int, window: int, refused: bool
) -> None:
    queue = {"stream": "ORDERS", "batchSize": batch, "maximumBatchingWindowSeconds": window}
    if not refused:
        source = parse_trigger(stream_trigger(queue=queue)).source
        assert isinstance(source, QueueSource) and source.batching.batch_size == batch
        return
    with pytest.raises(SpecError) as caught:
        parse_trigger(stream_trigger(queue=queue))
    assert caught.value.paths == ("spec.queue.maximumBatchingWindowSeconds",)


def test_a_kafka_batch_above_ten_needs_no_window() -> None:
    """Lambda's rule is for SQS (and streams): a Kafka mapping keeps its 500 ms default."""
    source = parse_trigger(stream_trigger(kafka={**KAFKA, "batchSize": 5000})).source
    assert isinstance(source, KafkaSource)
    assert (source.batching.batch_size, source.batching.window_seconds) == (5000, 0.5)


@pytest.mark.parametrize(("types", "reports"), [([], False), (["ReportBatchItemFailures"], True)])
def test_report_batch_item_failures_is_read_from_the_response_types(
    types: list[str], reports: bool
) -> None:
    source = parse_trigger(
        stream_trigger(queue={"stream": "ORDERS", "functionResponseTypes": types})
    ).source
    assert isinstance(source, QueueSource)
    assert source.batching.reports_batch_item_failures is reports


def test_a_kafka_block_reports_every_problem_at_once() -> None:
    kafka = {
        "bootstrapServers": ["kafka", "kafka:9092", "kafka:9092"],
        "topics": [],
        "consumerGroup": "",
        "startingPosition": "AT_TIMESTAMP",
        "maximumRetryAttempts": -2,
        "auth": {"tls": "yes", "sasl": True},
    }
    with pytest.raises(SpecError) as caught:
        parse_trigger(stream_trigger(kafka=kafka, delivery={"onSuccess": {"function": "audit"}}))
    assert set(caught.value.paths) == {
        "spec.kafka.bootstrapServers[0]",
        "spec.kafka.bootstrapServers[2]",
        "spec.kafka.topics",
        "spec.kafka.consumerGroup",
        "spec.kafka.startingPositionTimestamp",
        "spec.kafka.maximumRetryAttempts",
        "spec.kafka.auth.tls",
        "spec.kafka.auth.sasl",
        "spec.delivery.onSuccess",
    }


def test_a_queue_and_kafka_together_are_refused_with_both_read() -> None:
    with pytest.raises(SpecError) as caught:
        parse_trigger(stream_trigger(queue={"stream": "A B"}, kafka=KAFKA))
    assert set(caught.value.paths) == {"spec", "spec.queue.stream"}
