"""The NetworkPolicy of a Function: only the gateway's pods may open connections to its pods'
invoke port; scrapers (by namespace, ``--metrics-from``) may reach the metrics port. Its pods
may connect out only to DNS, the gateway, the operator's announcement endpoint (when pods
announce themselves) and what the Function declares (``spec.network``), unless the operator runs
with ``--function-egress=open``.

Invocations must pass through the gateway (auth, limits, metrics); the Function reconciler
applies this next to the Deployment. It takes effect where the network plugin enforces policies.
"""

from __future__ import annotations

from typing import Any

from kubelambda.api import Function
from kubelambda.api.labels import pod_selector
from kubelambda.api.network import EgressRule
from kubelambda.controller.config import ControllerConfig
from kubelambda.controller.resources.deployment import METRICS_PORT, PORT
from kubelambda.controller.resources.meta import Owner, object_meta

__all__ = ["function_network_policy", "gateway_peer", "operator_peer"]


def function_network_policy(
    function: Function, *, owner: Owner, config: ControllerConfig
) -> dict[str, Any]:
    policy: dict[str, Any] = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": object_meta(owner.name, owner),
        "spec": {
            "podSelector": {"matchLabels": pod_selector(owner.name)},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [gateway_peer(config)],
                    "ports": [{"protocol": "TCP", "port": PORT}],
                },
                *_metrics_rule(config.metrics_from),
            ],
        },
    }
    if config.function_egress == "restricted":
        policy["spec"]["policyTypes"].append("Egress")
        policy["spec"]["egress"] = [
            # Names resolve wherever the cluster's DNS runs (a Service, a node-local cache).
            {"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]},
            {
                "to": [gateway_peer(config)],
                "ports": [{"protocol": "TCP", "port": config.gateway_port}],
            },
            *_announce_rule(config),
            *(_egress_rule(rule) for rule in function.egress),
        ]
    return policy


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
