"""The Service of a Function: headless, so that the EndpointSlice controller lists its ready pods.

The gateway balances across pods itself (least in flight), reading those EndpointSlices;
a virtual IP would add nothing but a kube-proxy hop. The Function reconciler applies it.
"""

from __future__ import annotations

from typing import Any

from kubelambda.api.labels import pod_selector
from kubelambda.controller.resources.deployment import PORT
from kubelambda.controller.resources.meta import Owner, object_meta

__all__ = ["function_service"]


def function_service(*, owner: Owner) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": object_meta(owner.name, owner),
        "spec": {
            "clusterIP": "None",
            "selector": pod_selector(owner.name),
            "ports": [{"name": "http", "port": PORT, "targetPort": "http", "protocol": "TCP"}],
            # Only pods that passed /healthz may receive invocations.
            "publishNotReadyAddresses": False,
        },
    }
