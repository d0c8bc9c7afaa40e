"""Fixtures shared by the integration folders: a real NATS server with JetStream, one for the
session (`nats_server`), a test's own restartable ones (`nats_factory`) and a test's own
three-server JetStream cluster (`nats_cluster`), built by the harness on first use
(`scripts/build-parts nats-server` builds it ahead).

`namespace` is a test's own namespace on the `kube_api` of the folder that defines one.

Failed tests get the log tails of the NATS servers they used appended to their report.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import nats as nats_harness
from harness.apiserver import ApiServer
from harness.nats import NatsCluster, NatsFactory, NatsServer, nats_for_pytest


@pytest.fixture
def namespace(kube_api: ApiServer) -> Iterator[str]:
    """A new namespace of its own for the test, deleted after it (without waiting)."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    kube_api.kubectl("create", "namespace", name)
    yield name
    kube_api.kubectl("delete", "namespace", name, "--wait=false")


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """A nats-server with JetStream for the whole session, at `nats_server.url`. Tests share it:
    each uses stream and subject names of its own, and none stops it (`nats_factory` for that)."""
    yield from nats_for_pytest(tmp_path_factory, name="kubelambda-session")


@pytest.fixture
def nats_factory(tmp_path: Path) -> Iterator[NatsFactory]:
    """`nats_factory()` starts a server of the test's own, which it may stop, kill and restart
    on the same port and store (`store_dir=` to choose the store); all stop after the test."""
    with NatsFactory(log_dir=tmp_path / "nats-logs", store_root=tmp_path / "nats-store") as made:
        yield made


@pytest.fixture
def nats_cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    """Three nats-servers routed as one clustered JetStream, with a meta leader; clients take
    `nats_cluster.urls` (all three, comma-separated). A test may kill a member and bring it back
    on its ports and store (`nats_cluster.restart(member)`); all stop after the test."""
    with nats_harness.nats_cluster(
        size=3,
        name="kubelambda-cluster",
        store_root=tmp_path / "nats-cluster-store",
        log_dir=tmp_path / "nats-cluster-logs",
    ) as cluster:
        yield cluster


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if not report.failed:
        return
    funcargs = getattr(item, "funcargs", {})
    session, factory = funcargs.get("nats_server"), funcargs.get("nats_factory")
    cluster = funcargs.get("nats_cluster")
    if isinstance(session, NatsServer):
        report.sections.append(("NATS server log", session.log_tail()))
    if isinstance(factory, NatsFactory) and factory.servers:
        report.sections.append(("NATS servers' logs", factory.log_tails()))
    if isinstance(cluster, NatsCluster):
        report.sections.append(("NATS cluster's logs", cluster.log_tails()))
