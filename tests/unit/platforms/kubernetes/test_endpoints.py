"""kube/endpoints.py: which endpoints of an EndpointSlice are a Function's ready instances."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from kubelambda.platforms.kubernetes.endpoints import Endpoint, slice_endpoints, slice_function


def endpoint(ip: str, pod: str | None = None, **conditions: bool) -> dict[str, Any]:
    found: dict[str, Any] = {"addresses": [ip], "conditions": conditions}
    if pod:
        found["targetRef"] = {"kind": "Pod", "name": pod}
    return found


def a_slice(
    *endpoints: dict[str, Any], ports: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "hello-abc",
            "namespace": "ns",
            "labels": {
                "kubernetes.io/service-name": "hello",
                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
            },
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "Service", "name": "hello", "controller": True}
            ],
        },
        "ports": ports
        if ports is not None
        else [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": list(endpoints),
    }


def test_ready_endpoints_on_the_http_port() -> None:
    found = slice_endpoints(
        a_slice(
            endpoint("10.1.0.5", "hello-1", ready=True),
            endpoint("10.1.0.6", "hello-2", ready=False),
            endpoint("10.1.0.7", "hello-3", ready=True, terminating=True),
            endpoint("10.1.0.8"),  # no conditions: ready, as the API says
        )
    )
    assert found == (Endpoint("hello-1", "10.1.0.5", 8080), Endpoint("10.1.0.8", "10.1.0.8", 8080))


def test_starting_endpoints_are_the_not_ready_ones_not_going_away() -> None:
    found = slice_endpoints(
        a_slice(
            endpoint("10.1.0.5", "hello-1", ready=True),
            endpoint("10.1.0.6", "hello-2", ready=False),
            endpoint("10.1.0.7", "hello-3", ready=False, terminating=True),
            endpoint("10.1.0.8"),
        ),
        starting=True,
    )
    assert found == (Endpoint("hello-2", "10.1.0.6", 8080),)


def test_a_slice_without_the_port_has_no_instances() -> None:
    assert slice_endpoints(a_slice(endpoint("10.1.0.5", ready=True), ports=[])) == ()
    two = [{"name": "metrics", "port": 9000}, {"name": "other", "port": 9001}]
    assert slice_endpoints(a_slice(endpoint("10.1.0.5", ready=True), ports=two)) == ()
    one = [{"name": "", "port": 7000}]
    assert slice_endpoints(a_slice(endpoint("10.1.0.5", ready=True), ports=one))[0].port == 7000


def test_the_slice_names_its_function_by_its_service() -> None:
    assert slice_function(a_slice()) == ("ns", "hello")
    assert slice_function({"metadata": {"name": "x", "namespace": "ns"}}) is None


def forged(change: Callable[[dict[str, Any]], object]) -> dict[str, Any]:
    made = a_slice(endpoint("10.1.0.5", ready=True))
    change(made["metadata"])
    return made


@pytest.mark.parametrize(
    "change",
    [
        # written by someone else, with the right service-name label
        lambda meta: meta["labels"].pop("endpointslice.kubernetes.io/managed-by"),
        lambda meta: meta["labels"].update({"endpointslice.kubernetes.io/managed-by": "me"}),
        # not controlled by the Function's Service
        lambda meta: meta.pop("ownerReferences"),
        lambda meta: meta["ownerReferences"][0].update(name="other"),
        lambda meta: meta["ownerReferences"][0].update(kind="Deployment"),
        lambda meta: meta["ownerReferences"][0].pop("controller"),
    ],
    ids=[
        "no-manager",
        "other-manager",
        "no-owner",
        "other-service",
        "not-a-service",
        "not-controller",
    ],
)
def test_only_the_endpointslice_controllers_slices_of_the_service_are_trusted(
    change: Callable[[dict[str, Any]], object],
) -> None:
    assert slice_function(forged(change)) is None
    # A platform may name other managers (a mesh's or a test's), never skip the owner check.
    relabelled = forged(
        lambda meta: meta["labels"].update({"endpointslice.kubernetes.io/managed-by": "mesh"})
    )
    assert slice_function(relabelled, managers=frozenset({"mesh"})) == ("ns", "hello")
