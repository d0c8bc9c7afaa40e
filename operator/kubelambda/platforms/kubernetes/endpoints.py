"""A Function's pods, read from the EndpointSlices of its Service: the ready ones, and those
starting (an address, not ready yet, not going away), which the gateway probes itself.

The KubernetesPlatform calls ``slice_endpoints`` for every EndpointSlice event; pure, so the
rules (ready, not terminating, the "http" port) are tested as data.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from kubelambda.api.identity import FunctionKey

__all__ = ["SERVICE_NAME_LABEL", "Endpoint", "slice_endpoints", "slice_function"]

SERVICE_NAME_LABEL = "kubernetes.io/service-name"  # set by the EndpointSlice controller


class Endpoint(NamedTuple):
    """One pod that answers the invoke endpoint now."""

    id: str
    host: str
    port: int


def slice_function(endpoint_slice: Mapping[str, Any]) -> FunctionKey | None:
    """The Function of a slice: its Service is named after the Function."""
    meta = endpoint_slice.get("metadata") or {}
    service = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
    if not service:
        return None
    return FunctionKey(str(meta.get("namespace") or ""), str(service))


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
