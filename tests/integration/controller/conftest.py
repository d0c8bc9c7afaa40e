"""Fixtures of the controller's API-server tests: a real kube-apiserver and controller-manager
(garbage collection, Deployment status), the repository's CRDs, and the operator running as a
subprocess against them. There are no nodes, so pods stay Pending."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.apiserver import ApiServer, api_server_for_pytest
from integration.controller.operating import OperatorProcess

CRDS = Path(__file__).resolve().parents[3] / "crds"
_shared: list[OperatorProcess] = []  # the session's operator, once a test has started it


@pytest.fixture(scope="session")
def kube_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    yield from api_server_for_pytest(tmp_path_factory, controller_manager=True)


@pytest.fixture(scope="session")
def crds(kube_api: ApiServer) -> None:
    kube_api.kubectl("apply", "--server-side", "-f", str(CRDS))
    kube_api.kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/functions.kubelambda.dev",
        "crd/triggers.kubelambda.dev",
    )


@pytest.fixture(scope="session")
def operator(
    kube_api: ApiServer, crds: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    running = OperatorProcess(kube_api, tmp_path_factory.mktemp("operator"))
    running.start()
    _shared.append(running)
    try:
        yield running
    finally:
        _shared.remove(running)
        running.stop()


@pytest.fixture(scope="module", autouse=True)
def _alone(request: pytest.FixtureRequest) -> Iterator[None]:
    """A module marked own_operator runs its operators alone: the shared one, if a test started
    it, is stopped meanwhile. Two operators on one Trigger overwrite each other's status (the
    shared one has no --nats and says a stream is not observed where the test's says Consuming).
    The shared operator watches every namespace (it scans none, to keep its RBAC narrow), so
    it cannot be told to leave some out."""
    paused = list(_shared) if request.node.get_closest_marker("own_operator") else []
    for running in paused:
        running.stop()
    yield
    for running in paused:
        running.start()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if not report.failed:
        return
    funcargs = getattr(item, "funcargs", {})
    running = funcargs.get("operator")
    if isinstance(running, OperatorProcess):
        report.sections.append(("operator log", running.tail()))
    server = funcargs.get("kube_api")
    if isinstance(server, ApiServer):
        report.sections.append(("API server logs", server.log_tails()))
