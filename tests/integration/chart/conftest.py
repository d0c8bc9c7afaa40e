"""Fixtures of the chart's tests: a real API server (no controller-manager: nothing here needs
pods) with the chart installed once by the harness's helm, as release "kubelambda" in namespace
"kubelambda"."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.apiserver import ApiServer, api_server_for_pytest

CHART = Path(__file__).resolve().parents[3] / "charts" / "kubelambda"
RELEASE = NAMESPACE = "kubelambda"


@pytest.fixture(scope="session")
def chart_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    yield from api_server_for_pytest(tmp_path_factory)


@pytest.fixture(scope="session")
def installed(chart_api: ApiServer) -> ApiServer:
    chart_api.helm(
        "install",
        RELEASE,
        str(CHART),
        "--namespace",
        NAMESPACE,
        "--create-namespace",
        "--wait=false",
    )
    return chart_api


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    server = getattr(item, "funcargs", {}).get("installed") or getattr(item, "funcargs", {}).get(
        "chart_api"
    )
    if report.failed and isinstance(server, ApiServer):
        report.sections.append(("API server logs", server.log_tails()))
