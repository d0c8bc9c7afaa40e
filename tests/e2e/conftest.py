"""Fixtures of the e2e tier: one real single-node cluster for the whole session (`e2e_cluster`)
and the kubelambda chart installed on it (`installed`), with Prometheus scraping its gateway.

Parts the product does not have yet fail the scenarios that need them, naming what is missing;
failed tests get the cluster's log tails and events appended to their report.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from e2e.async_events.traffic import Recorder, recorder
from harness.cluster import Cluster, cluster
from harness.relay import Relay, relay
from harness.release import Release, ReleaseFailed, release

E2E_DIR = Path(__file__).resolve().parent
# The cluster and the release, closed as soon as the last e2e test is done rather than at the end
# of the session: the tests that follow should not share two cores with an idle cluster.
_resources = ExitStack()


@pytest.fixture(scope="session")
def e2e_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The real cluster: built parts from the cache, images imported, node Ready."""
    yield _resources.enter_context(cluster(log_dir=tmp_path_factory.mktemp("cluster-logs")))
    _resources.close()


def _in_e2e(item: pytest.Item | None) -> bool:
    return item is not None and E2E_DIR in item.path.parents


# Scenarios that replace the release's pods (whose addresses the release fixture and Prometheus
# hold, tests/harness/release.py) run after the other e2e scenarios.
DISRUPTS = "disrupts_release"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{DISRUPTS}: the scenario restarts the release's pods; it runs last"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Move the scenarios marked `disrupts_release` behind the last other e2e scenario (not
    behind other tiers' tests: the cluster closes after the last e2e test)."""
    disrupting = [i for i in items if _in_e2e(i) and i.get_closest_marker(DISRUPTS)]
    kept = [i for i in items if i not in disrupting]
    others = [n for n, item in enumerate(kept) if _in_e2e(item)]
    if disrupting and others:
        items[:] = [*kept[: others[-1] + 1], *disrupting, *kept[others[-1] + 1 :]]


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    if _in_e2e(item) and not _in_e2e(nextitem):
        _resources.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    running = getattr(item, "funcargs", {}).get("e2e_cluster")
    if report.failed and isinstance(running, Cluster):
        report.sections.append(("cluster logs", running.log_tails(30)))
        events = running.kubectl(
            "get", "events", "--all-namespaces", "--sort-by=.lastTimestamp", check=False
        )
        report.sections.append(("cluster events", events.stdout[-6000:]))


@pytest.fixture(scope="session")
def installed(e2e_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Release:
    """`helm install` of charts/kubelambda with this run's images; the operator and gateway pods
    Ready; Prometheus scraping the gateway for the autoscaler."""
    try:
        installed = _resources.enter_context(
            release(e2e_cluster, workdir=tmp_path_factory.mktemp("helm"))
        )
    except ReleaseFailed as exc:
        pytest.fail(f"{exc}\n(this scenario runs as soon as the product parts it names work)")
    return installed  # uninstalled when `_resources` closes, before the cluster stops


@pytest.fixture
def reports(e2e_cluster: Cluster) -> Iterator[tuple[Recorder, Relay]]:
    """A recorder on loopback that scenarios' functions report to (POST {"id": ...}), and the
    relay on the node's address pods reach it through."""
    with recorder() as made, relay(e2e_cluster.node_ip, ("127.0.0.1", made.port)) as to_recorder:
        yield made, to_recorder
