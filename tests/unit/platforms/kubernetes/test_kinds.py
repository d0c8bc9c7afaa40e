"""kube/kinds.py: REST paths of every kind, and kinds read back from manifests."""

from __future__ import annotations

import pytest

from kubelambda.platforms.kubernetes.kinds import (
    CONFIG_MAP,
    DEPLOYMENT,
    FUNCTION,
    Kind,
    kind_of,
)

# Cluster-scoped (none of kubelambda's kinds is, but Kind supports one).
NAMESPACE = Kind("", "v1", "namespaces", "Namespace", namespaced=False)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (CONFIG_MAP.path(namespace="ns"), "/api/v1/namespaces/ns/configmaps"),
        (CONFIG_MAP.path(namespace="ns", name="c"), "/api/v1/namespaces/ns/configmaps/c"),
        (CONFIG_MAP.path(), "/api/v1/configmaps"),
        (
            DEPLOYMENT.path(namespace="ns", name="d", subresource="scale"),
            "/apis/apps/v1/namespaces/ns/deployments/d/scale",
        ),
        (
            FUNCTION.path(namespace="ns", name="f", subresource="status"),
            "/apis/kubelambda.dev/v1alpha1/namespaces/ns/functions/f/status",
        ),
        # Cluster-scoped: a namespace given (as KubeClient.create passes one) is left out.
        (NAMESPACE.path(namespace="ns", name="ns"), "/api/v1/namespaces/ns"),
    ],
)
def test_paths(path: str, expected: str) -> None:
    assert path == expected


def test_a_subresource_needs_a_name() -> None:
    with pytest.raises(ValueError, match="needs an object name"):
        DEPLOYMENT.path(namespace="ns", subresource="scale")


def test_kind_of_a_manifest() -> None:
    assert kind_of({"apiVersion": "apps/v1", "kind": "Deployment"}) is DEPLOYMENT
    assert kind_of({"apiVersion": "kubelambda.dev/v1alpha1", "kind": "Function"}) is FUNCTION
    with pytest.raises(ValueError, match="unknown kind batch/v1/Job"):
        kind_of({"apiVersion": "batch/v1", "kind": "Job"})
