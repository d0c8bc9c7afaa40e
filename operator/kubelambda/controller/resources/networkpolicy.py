"""The NetworkPolicy of a Function: only the gateway's pods may open connections to its pods'
invoke port; scrapers (by namespace, ``--metrics-from``) may reach the metrics port.

Invocations must pass through the gateway (auth, limits, metrics); the Function reconciler
applies this next to the Deployment. It takes effect where the network plugin enforces policies.
"""

from __future__ import annotations

from typing import Any

from kubelambda.api.labels import pod_selector
from kubelambda.controller.config import ControllerConfig
from kubelambda.controller.resources.deployment import METRICS_PORT, PORT
from kubelambda.controller.resources.meta import Owner, object_meta

__all__ = ["function_network_policy"]


def function_network_policy(*, owner: Owner, config: ControllerConfig) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": object_meta(owner.name, owner),
        "spec": {
            "podSelector": {"matchLabels": pod_selector(owner.name)},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [
                        {
                            # Both selectors in one peer: gateway pods in the gateway's
                            # namespace, not pods with those labels anywhere.
                            "namespaceSelector": {
                                "matchLabels": {
                                    "kubernetes.io/metadata.name": config.gateway_namespace
                                }
                            },
                            "podSelector": {"matchLabels": dict(config.gateway_pod_labels)},
                        }
                    ],
                    "ports": [{"protocol": "TCP", "port": PORT}],
                },
                *_metrics_rule(config.metrics_from),
            ],
        },
    }


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
