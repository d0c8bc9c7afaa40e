"""Kubernetes names for SAM's: Lambda names as DNS labels, names out of ARNs, unique names."""

from __future__ import annotations

import re

import pytest

from kubelambda.api.patterns import DNS_LABEL
from kubelambda.api.sam.names import NameBook, arn_resource, arn_service, dns_label, secret_name


@pytest.mark.parametrize(
    ("name", "label"),
    [
        ("OrderHandler", "order-handler"),
        ("HelloWorldFunction", "hello-world-function"),
        ("HTTPApiHandler", "http-api-handler"),
        ("Order2Handler", "order2-handler"),
        ("my_function", "my-function"),
        ("hello", "hello"),
        ("shop-Orders--v2", "shop-orders-v2"),
        ("2fast", "fn-2fast"),
        ("_", "fn"),
        ("x" * 70, "x" * 63),
        ("Ab" * 40, "-".join(["ab"] * 21)),  # cut at 63, without the '-' the cut leaves last
    ],
)
def test_dns_label(name: str, label: str) -> None:
    assert dns_label(name) == label
    assert len(label) <= 63 and re.fullmatch(DNS_LABEL, label)


@pytest.mark.parametrize(
    ("arn", "service", "name"),
    [
        ("arn:aws:sqs:us-east-1:123456789012:orders", "sqs", "orders"),
        ("arn:aws:lambda:us-east-1:123456789012:function:OrderHandler", "lambda", "OrderHandler"),
        (
            "arn:aws:lambda:us-east-1:123456789012:function:OrderHandler:live",
            "lambda",
            "OrderHandler",
        ),
        ("arn:aws:sns:us-east-1:123456789012:alerts", "sns", "alerts"),
        ("arn:aws:s3:::bucket", "s3", "bucket"),
        ("orders", "", "orders"),
    ],
)
def test_arn_parts(arn: str, service: str, name: str) -> None:
    assert (arn_service(arn), arn_resource(arn)) == (service, name)


@pytest.mark.parametrize(
    ("arn", "name"),
    [
        ("arn:aws:secretsmanager:us-east-1:1:secret:shop/KafkaUser-Ab12Cd", "shop-kafka-user"),
        ("arn:aws:secretsmanager:us-east-1:1:secret:kafka_creds-x9Y8z7", "kafka-creds"),
        # six lowercase letters are a word of the name, not Secrets Manager's random suffix
        ("arn:aws:secretsmanager:us-east-1:1:secret:prod-orders", "prod-orders"),
        ("arn:aws:secretsmanager:us-east-1:1:secret:prod-orders-k3j9Qa", "prod-orders"),
    ],
)
def test_secret_name(arn: str, name: str) -> None:
    assert secret_name(arn) == name


def test_name_book_makes_names_unique_within_the_limit() -> None:
    book = NameBook(limit=10)
    assert [book.take(n) for n in ("orders", "orders", "orders", "abcdefghij", "abcdefghij")] == [
        "orders",
        "orders-2",
        "orders-3",
        "abcdefghij",
        "abcdefgh-2",
    ]
