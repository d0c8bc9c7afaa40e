"""The kinds of object kubelambda reads and writes, and the REST paths that serve them.

Every module that talks to the API server names objects through these constants; the
client builds URLs from them, so no path string is spelled twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = [
    "CONFIG_MAP",
    "DEPLOYMENT",
    "ENDPOINT_SLICE",
    "EVENT",
    "FUNCTION",
    "LEASE",
    "NETWORK_POLICY",
    "POD",
    "SECRET",
    "SERVICE",
    "TRIGGER",
    "Kind",
]


@dataclass(frozen=True)
class Kind:
    """One resource type: its API group ("" for the core group), version, plural and kind."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(
        self,
        *,
        namespace: str | None = None,
        name: str | None = None,
        subresource: str | None = None,
    ) -> str:
        """The URL path of the collection (no name) or of one object (and its subresource)."""
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace is not None:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        if name is not None:
            base += f"/{name}"
            if subresource is not None:
                base += f"/{subresource}"
        elif subresource is not None:
            raise ValueError("a subresource needs an object name")
        return base

    def __str__(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural


FUNCTION: Final = Kind("kubelambda.dev", "v1alpha1", "functions", "Function")
TRIGGER: Final = Kind("kubelambda.dev", "v1alpha1", "triggers", "Trigger")
CONFIG_MAP: Final = Kind("", "v1", "configmaps", "ConfigMap")
SECRET: Final = Kind("", "v1", "secrets", "Secret")
SERVICE: Final = Kind("", "v1", "services", "Service")
POD: Final = Kind("", "v1", "pods", "Pod")
EVENT: Final = Kind("", "v1", "events", "Event")
DEPLOYMENT: Final = Kind("apps", "v1", "deployments", "Deployment")
NETWORK_POLICY: Final = Kind("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy")
ENDPOINT_SLICE: Final = Kind("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice")
LEASE: Final = Kind("coordination.k8s.io", "v1", "leases", "Lease")

_BY_API_VERSION_AND_KIND: Final = {
    (k.api_version, k.kind): k
    for k in (
        FUNCTION,
        TRIGGER,
        CONFIG_MAP,
        SECRET,
        SERVICE,
        POD,
        EVENT,
        DEPLOYMENT,
        NETWORK_POLICY,
        ENDPOINT_SLICE,
        LEASE,
    )
}


def kind_of(obj: object) -> Kind:
    """The Kind of a manifest from its apiVersion and kind; ValueError for one we do not know."""
    if isinstance(obj, dict):
        found = _BY_API_VERSION_AND_KIND.get((str(obj.get("apiVersion")), str(obj.get("kind"))))
        if found is not None:
            return found
        raise ValueError(f"unknown kind {obj.get('apiVersion')}/{obj.get('kind')}")
    raise ValueError(f"not an object: {type(obj).__name__}")
