"""A real API server (with the repository's CRDs) for the cluster autoscaler's tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.apiserver import ApiServer, api_server_for_pytest

CRDS = Path(__file__).resolve().parents[3] / "crds"


@pytest.fixture(scope="module")
def kube_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    for server in api_server_for_pytest(tmp_path_factory):
        server.kubectl("apply", "--server-side", "-f", str(CRDS))
        server.kubectl(
            "wait", "--for=condition=Established", "--timeout=60s", "crd/functions.kubelambda.dev"
        )
        yield server
