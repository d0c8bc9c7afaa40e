"""The recorder the async_events scenarios' functions report to."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from e2e.async_events.traffic import Recorder, recorder
from harness.cluster import Cluster
from harness.relay import Relay, relay


@pytest.fixture
def reports(e2e_cluster: Cluster) -> Iterator[tuple[Recorder, Relay]]:
    """The recorder on loopback, and the relay on the node's address pods reach it through."""
    with recorder() as made, relay(e2e_cluster.node_ip, ("127.0.0.1", made.port)) as to_recorder:
        yield made, to_recorder
