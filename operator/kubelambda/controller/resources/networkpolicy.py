"""The NetworkPolicies of Functions' pods: only the gateway's pods may open connections to their
invoke port; scrapers (by namespace, ``--metrics-from``) may reach the metrics port. The pods
may connect out only to DNS, the gateway, the operator's announcement endpoint (when pods
announce themselves) and what each Function declares (``spec.network``), unless the operator
runs with ``--function-egress=open``.

What every Function's pods share is one policy per namespace, ``kubelambda-functions``, which
selects every pod with the Function label; a Function that declares destinations gets a policy
of its own that adds them (policies add up: a pod may reach what any policy selecting it
allows). So a namespace of 15,000 Functions holds one policy, not 15,000 copies of it, for the
API server to store and the network plugin to compute.

Invocations must pass through the gateway (auth, limits, metrics); the Function reconciler
applies these before the Deployment. They take effect where the network plugin enforces policies.
"""

from __future__ import annotations

from typing import Any, Final

from kubelambda.api import Function
from kubelambda.api.labels import (
    COMPONENT_LABEL,
    FUNCTION_LABEL,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    pod_selector,
)
from kubelambda.api.network import EgressRule
from kubelambda.controller.config import ControllerConfig
from kubelambda.controller.resources.deployment import METRICS_PORT, PORT
from kubelambda.controller.resources.meta import Owner, object_meta

__all__ = [
    "FUNCTIONS_POLICY",
    "FUNCTIONS_POLICY_COMPONENT",
    "function_network_policy",
    "functions_network_policy",
    "gateway_peer",
    "operator_peer",
]

FUNCTIONS_POLICY: Final = "kubelambda-functions"
# Its app.kubernetes.io/component label: how the operator knows the shared policy as its own.
FUNCTIONS_POLICY_COMPONENT: Final = "functions"


def functions_network_policy(*, namespace: str, config: ControllerConfig) -> dict[str, Any]:
    """The policy every Function's pods in ``namespace`` share (module docstring)."""
    spec: dict[str, Any] = {
        "podSelector": {"matchExpressions": [{"key": FUNCTION_LABEL, "operator": "Exists"}]},
        "policyTypes": ["Ingress"],
        "ingress": [
            {"from": [gateway_peer(config)], "ports": [{"protocol": "TCP", "port": PORT}]},
            *_metrics_rule(config.metrics_from),
        ],
    }
    if config.function_egress == "restricted":
        spec["policyTypes"].append("Egress")
        spec["egress"] = [
            # Names resolve wherever the cluster's DNS runs (a Service, a node-local cache).
            {"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]},
            {
                "to": [gateway_peer(config)],
                "ports": [{"protocol": "TCP", "port": config.gateway_port}],
            },
            *_announce_rule(config),
        ]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": FUNCTIONS_POLICY,
            "namespace": namespace,
            "labels": {MANAGED_BY_LABEL: MANAGED_BY, COMPONENT_LABEL: FUNCTIONS_POLICY_COMPONENT},
        },
        "spec": spec,
    }


def function_network_policy(
    function: Function, *, owner: Owner, config: ControllerConfig
) -> dict[str, Any] | None:
    """The policy of ``function``'s own: the destinations it declares, added to the shared
    policy's; None when it declares none or egress is open (the shared policy is all)."""
    if config.function_egress != "restricted" or not function.egress:
        return None
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": object_meta(owner.name, owner),
        "spec": {
            "podSelector": {"matchLabels": pod_selector(owner.name)},
            "policyTypes": ["Egress"],
            "egress": [_egress_rule(rule) for rule in function.egress],
        },
    }


def gateway_peer(config: ControllerConfig) -> dict[str, Any]:
    """The gateway's pods as a policy peer (a pool pod's policy lets them in too)."""
    # Both selectors in one peer: gateway pods in the gateway's namespace, not pods with
    # those labels anywhere.
    return {
        "namespaceSelector": {
            "matchLabels": {"kubernetes.io/metadata.name": config.gateway_namespace}
        },
        "podSelector": {"matchLabels": dict(config.gateway_pod_labels)},
    }


def operator_peer(config: ControllerConfig) -> dict[str, Any]:
    """The operator's pods as a policy peer (in its namespace only, as ``gateway_peer``)."""
    return {
        "namespaceSelector": {
            "matchLabels": {"kubernetes.io/metadata.name": config.operator_namespace}
        },
        "podSelector": {"matchLabels": dict(config.operator_pod_labels)},
    }


def _announce_rule(config: ControllerConfig) -> list[dict[str, Any]]:
    """A starting pod announces itself to the operator (docs/contracts.md "Announcements")."""
    if not config.announce_url:
        return []
    return [
        {
            "to": [operator_peer(config)],
            "ports": [{"protocol": "TCP", "port": config.announce_port}],
        }
    ]


def _egress_rule(rule: EgressRule) -> dict[str, Any]:
    if rule.cidr is not None:
        peer: dict[str, Any] = {"ipBlock": {"cidr": rule.cidr}}
    else:
        peer = {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": rule.namespace}}
        }
        if rule.pod_labels:
            peer["podSelector"] = {"matchLabels": dict(rule.pod_labels)}
    found: dict[str, Any] = {"to": [peer]}
    if rule.ports:
        found["ports"] = [{"protocol": "TCP", "port": port} for port in rule.ports]
    return found


def _metrics_rule(namespaces: tuple[str, ...]) -> list[dict[str, Any]]:
    """Scrapers in ``namespaces`` ("*": any) to the metrics port, which serves nothing else."""
    if not namespaces:
        return []
    if "*" in namespaces:
        peer: dict[str, Any] = {"namespaceSelector": {}}
    else:
        peer = {
            "namespaceSelector": {
                "matchExpressions": [
                    {
                        "key": "kubernetes.io/metadata.name",
                        "operator": "In",
                        "values": sorted(namespaces),
                    }
                ]
            }
        }
    return [{"from": [peer], "ports": [{"protocol": "TCP", "port": METRICS_PORT}]}]
