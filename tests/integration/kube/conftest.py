"""Fixtures of the API-server tier: one real etcd, kube-apiserver and kube-controller-manager for
the whole session (`kube_api`), built from their Go modules by the harness on first use.

Failed tests get the servers' log tails appended to their report.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness.apiserver import ApiServer, api_server_for_pytest


@pytest.fixture(scope="session")
def kube_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """A real API server, admin kubeconfig at `.kubeconfig`; `kube_api.kubectl(...)` runs kubectl.
    The controller-manager runs too, so garbage collection and service accounts work."""
    yield from api_server_for_pytest(tmp_path_factory, controller_manager=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    server = getattr(item, "funcargs", {}).get("kube_api")
    if report.failed and isinstance(server, ApiServer):
        report.sections.append(("API server logs", server.log_tails()))
