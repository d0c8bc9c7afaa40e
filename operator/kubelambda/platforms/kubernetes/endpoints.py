"""A Function's pods, read from the EndpointSlices of its Service: the ready ones, and those
starting (an address, not ready yet, not going away), which the gateway probes itself.

The KubernetesPlatform calls ``slice_endpoints`` for every EndpointSlice event; pure, so the
rules (ready, not terminating, the "http" port) are tested as data. Only slices the
EndpointSlice controller wrote for the Function's Service are trusted (``slice_function``):
a slice anyone else wrote, with the right labels, does not receive a Function's traffic.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from kubelambda.api.identity import FunctionKey

__all__ = [
    "MANAGED_BY_LABEL",
    "SERVICE_NAME_LABEL",
    "SLICE_CONTROLLER",
    "Endpoint",
    "slice_endpoints",
    "slice_function",
]

SERVICE_NAME_LABEL = "kubernetes.io/service-name"  # set by the EndpointSlice controller
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
# Kubernetes' own EndpointSlice controller; since 1.22 the aggregated edit and admin roles
# cannot write EndpointSlices, so by default only the control plane makes these.
SLICE_CONTROLLER = "endpointslice-controller.k8s.io"


class Endpoint(NamedTuple):
    """One pod that answers the invoke endpoint now."""

    id: str
    host: str
    port: int


def slice_function(
    endpoint_slice: Mapping[str, Any], *, managers: frozenset[str] = frozenset({SLICE_CONTROLLER})
) -> FunctionKey | None:
    """The Function of a slice (its Service is named after the Function), or None for a slice
    not to be trusted: one not managed by one of `managers`, or not controlled by the Service
    its label names (the EndpointSlice controller sets both)."""
    meta = endpoint_slice.get("metadata") or {}
    labels = meta.get("labels") or {}
    service = labels.get(SERVICE_NAME_LABEL)
    if not service or labels.get(MANAGED_BY_LABEL) not in managers:
        return None
    owned = any(
        owner.get("kind") == "Service" and owner.get("name") == service and owner.get("controller")
        for owner in meta.get("ownerReferences") or ()
    )
    return FunctionKey(str(meta.get("namespace") or ""), str(service)) if owned else None


def slice_endpoints(
    endpoint_slice: Mapping[str, Any], *, starting: bool = False
) -> tuple[Endpoint, ...]:
    """The slice's ready endpoints on the port named "http" (or its only port); with
    ``starting``, those not ready yet instead.

    A missing ``ready`` condition counts as ready, as the API documents; terminating pods are
    left out even while they still serve, so no new invocation starts on a pod going away.
    """
    ports = endpoint_slice.get("ports") or []
    port = next(
        (p for p in ports if p.get("name") == "http"), ports[0] if len(ports) == 1 else None
    )
    if port is None or port.get("port") is None:
        return ()
    found: list[Endpoint] = []
    for endpoint in endpoint_slice.get("endpoints") or []:
        conditions = endpoint.get("conditions") or {}
        if (conditions.get("ready") is False) != starting or conditions.get("terminating"):
            continue
        addresses = endpoint.get("addresses") or []
        if not addresses:
            continue
        target = (endpoint.get("targetRef") or {}).get("name")
        found.append(
            Endpoint(id=str(target or addresses[0]), host=addresses[0], port=int(port["port"]))
        )
    return tuple(found)
