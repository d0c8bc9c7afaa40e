"""Pod Security `restricted`, enforced by a real API server, admits a warm pool's pod (the pool
Deployment's template) into a function namespace, as it admits a function's own pods."""

from __future__ import annotations

from types import MappingProxyType

from harness.apiserver import ApiServer
from integration.chart.test_pod_security import (
    FUNCTIONS_NAMESPACE,
    assert_admitted,
    numeric_non_root_users,
    pod_of,
    restricted,
)
from kubelambda.controller.config import ControllerConfig, WarmPool
from kubelambda.controller.resources.pool import pool_deployment

__all__ = ["restricted"]  # the fixture, shared with test_pod_security.py


def test_a_pool_pod_is_admitted(restricted: ApiServer) -> None:
    deployment = pool_deployment(
        namespace=FUNCTIONS_NAMESPACE,
        runtime="python3.12",
        image="localhost/kubelambda-runtime:0.1.0",
        pool=WarmPool(size=2),
        config=ControllerConfig(
            runtime_images=MappingProxyType({"python3.12": "localhost/kubelambda-runtime:0.1.0"})
        ),
    )
    pod = pod_of(deployment, FUNCTIONS_NAMESPACE)
    assert numeric_non_root_users(pod)
    assert_admitted(restricted, pod)
