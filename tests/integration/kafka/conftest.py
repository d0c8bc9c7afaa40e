"""Fixtures of the Kafka tests, which run in anyio's event loop (asyncio) as aiokafka needs: one
broker for the session (`kafka_broker`, with a SASL/PLAIN listener) and a test's own restartable
one (`own_kafka_broker`), from the jars `scripts/build-parts kafka` fetches ahead.

Failed tests get the log tails of the brokers they used appended to their report.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import kafka
from harness.kafka import KafkaBroker


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """A broker for the whole session, at `kafka_broker.bootstrap` (plaintext) and
    `kafka_broker.sasl_bootstrap` (SASL/PLAIN as the user in `kafka_broker.sasl_users`). Tests
    share it: each uses topic and group names of its own, and none stops it."""
    users = {"lambda": secrets.token_hex(16)}
    yield from kafka.kafka_for_pytest(tmp_path_factory, sasl_users=users)


@pytest.fixture
def own_kafka_broker(tmp_path: Path) -> Iterator[KafkaBroker]:
    """A broker of the test's own, which it may stop, kill and restart on the same ports and
    store (`own_kafka_broker.store_dir`); stopped after the test."""
    with kafka.kafka_broker(
        store_dir=tmp_path / "kafka-store", log_dir=tmp_path / "kafka-logs"
    ) as broker:
        yield broker


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if not report.failed:
        return
    for name, broker in getattr(item, "funcargs", {}).items():
        if isinstance(broker, KafkaBroker):
            report.sections.append((f"Kafka broker log ({name})", broker.log_tail()))
