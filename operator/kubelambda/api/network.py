"""A Function's egress rules (``spec.network.egress``): the destinations its pods may connect
to beyond DNS and the gateway. The controller turns them into its NetworkPolicy; local mode
runs functions as processes of this machine and does not restrict them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from kubelambda.api.reader import Node, Reader

__all__ = ["EgressRule", "read_egress"]


@dataclass(frozen=True, kw_only=True)
class EgressRule:
    """An IP block (``cidr``), or the pods of ``namespace`` (those with ``pod_labels``, or all),
    on ``ports`` (TCP; empty: every port)."""

    cidr: str | None = None
    namespace: str | None = None
    pod_labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    ports: tuple[int, ...] = ()


def read_egress(reader: Reader, spec: Node) -> tuple[EgressRule, ...]:
    network = reader.obj(spec.child("network"))
    if network is None:
        return ()
    rules = []
    for item in reader.items(network.child("egress")):
        node = reader.obj(item)
        if node is None:
            continue
        cidr = reader.optional_text(node.child("cidr"))
        namespace = reader.optional_text(node.child("namespace"))
        if (cidr is None) == (namespace is None):
            reader.report(node.path, "must set exactly one of cidr, namespace")
        labels_node = reader.obj(node.child("podLabels"))
        if labels_node is not None and namespace is None:
            reader.report(f"{node.path}.podLabels", "goes with namespace, not with cidr")
        if cidr is not None:
            try:
                cidr = str(ipaddress.ip_network(cidr, strict=False))
            except ValueError:
                reader.report(
                    f"{node.path}.cidr", f"must be an IP block such as 10.0.0.0/8, not {cidr!r}"
                )
        labels = {key: reader.text(value) for key, value in reader.entries(labels_node)}
        rules.append(
            EgressRule(
                cidr=cidr,
                namespace=namespace,
                pod_labels=MappingProxyType(labels),
                ports=tuple(reader.integer(port) for port in reader.items(node.child("ports"))),
            )
        )
    return tuple(rules)
