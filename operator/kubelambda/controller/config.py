"""The operator's configuration: runtime images, where the gateway is, identity for the runtime.

``main`` builds one ``ControllerConfig`` from the command line (the Helm chart sets the flags);
the builders and reconcilers read it. Nothing here touches the network.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

__all__ = ["FIELD_MANAGER", "REPLICAS_MANAGER", "ControllerConfig", "WarmPool"]

# Server-side apply identities. The controller applies everything it owns as FIELD_MANAGER;
# REPLICAS_MANAGER takes a Deployment's first replica count over before the controller applies
# that Deployment again, and holds it until the autoscaler (or a person with `kubectl scale`)
# takes it, so no apply of the controller ever drops replicas it alone owns.
FIELD_MANAGER: Final = "kubelambda-controller"
REPLICAS_MANAGER: Final = "kubelambda-initial-replicas"


@dataclass(frozen=True, kw_only=True)
class WarmPool:
    """The warm pool (Helm value warmPool): ``size`` generic runtime pods per watched namespace
    and runtime of ``runtimes``, each with ``memory_mb``; size 0 means no pool at all."""

    size: int = 0
    runtimes: tuple[str, ...] = ("python3.12",)
    memory_mb: int = 128
    # Only these namespaces get pools (a namespace's opt-in); empty: every namespace served.
    namespaces: tuple[str, ...] = ()
    # Specialisations at once (each holds one HTTP call to a pool pod), and how many may wait.
    concurrency: int = 4
    backlog: int = 64

    @property
    def enabled(self) -> bool:
        return self.size > 0

    def serves(self, namespace: str) -> bool:
        """Whether ``namespace`` has pools."""
        return self.enabled and (not self.namespaces or namespace in self.namespaces)


@dataclass(frozen=True, kw_only=True)
class ControllerConfig:
    """Everything the operator is told rather than what it reads from Functions."""

    # spec.runtime → image serving the runtime, e.g. python3.12 → localhost/kubelambda-runtime:0.1.0
    runtime_images: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    image_pull_policy: str = "IfNotPresent"
    # The control-plane image: a function pod's init container runs `kubelambda.commands.fetch_code`
    # from it to fetch spec.code.s3 and spec.layers. None: such Functions are refused, saying so.
    fetch_image: str | None = None
    # The gateway's public base URL (for status.url) and where its pods run (NetworkPolicy).
    gateway_url: str = "http://kubelambda-gateway.kubelambda.svc"
    gateway_namespace: str = "kubelambda"
    gateway_pod_labels: Mapping[str, str] = field(
        default_factory=lambda: MappingProxyType(
            {"app.kubernetes.io/name": "kubelambda", "app.kubernetes.io/component": "gateway"}
        )
    )
    # The gateway pods' public port: function pods may connect to it (to invoke others).
    gateway_port: int = 8080
    # "restricted": function pods may connect only to DNS, the gateway and what each
    # Function declares (spec.network.egress); "open": anywhere.
    function_egress: str = "restricted"
    # Namespaces whose pods may scrape function pods' metrics port ("*": every namespace;
    # none: nobody). The invoke port stays open to the gateway only.
    metrics_from: tuple[str, ...] = ("*",)
    # What the runtime tells handlers (AWS_REGION, the account in ARNs).
    region: str = "us-east-1"
    account_id: str = "000000000000"
    # The S3 server's ARN for the gateway's webhook target (bucket subscriptions).
    s3_webhook_arn: str = "arn:minio:sqs::kubelambda:webhook"
    # Reconcile concurrency, and how often every object is reconciled even without events.
    workers: int = 8
    resync_seconds: float = 300.0
    # How often the source of each queue and kafka Trigger is looked at (status.consumer).
    observe_seconds: float = 30.0
    # Where a Function's starting pods announce that they serve (the autoscaler's endpoint,
    # docs/contracts.md "Announcements"), and its port on the operator's pods (their egress
    # policy). None: pods do not announce; the gateway waits for the EndpointSlice.
    announce_url: str | None = None
    announce_port: int = 8082
    # True: every function pod keeps a read-only root filesystem, its inline code mounted and
    # /tmp an emptyDir, for clusters whose admission requires it; a cold start then waits
    # about 300 ms more for the kubelet's volume manager (resources/deployment.py).
    read_only_root: bool = False
    # The warm pool, and who may reach its pods' pool port (the operator's own pods).
    warm_pool: WarmPool = field(default_factory=WarmPool)
    operator_namespace: str = "kubelambda"
    operator_pod_labels: Mapping[str, str] = field(
        default_factory=lambda: MappingProxyType(
            {"app.kubernetes.io/name": "kubelambda", "app.kubernetes.io/component": "operator"}
        )
    )

    def function_url(self, *, namespace: str, name: str) -> str:
        """The Lambda Invoke API URL of a Function (FunctionName NAMESPACE.NAME)."""
        return f"{self.gateway_url.rstrip('/')}/2015-03-31/functions/{namespace}.{name}/invocations"

    def route_url(self, *, path: str, host: str | None) -> str:
        """The URL an HTTP Trigger is served at."""
        base = self.gateway_url.rstrip("/")
        if host:
            scheme = base.split("://", 1)[0] if "://" in base else "http"
            base = f"{scheme}://{host}"
        return base + path
