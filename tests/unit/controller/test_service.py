"""resources/service.py and networkpolicy.py: the Service of a Function, the NetworkPolicy its
namespace's Functions share, and its own when it declares destinations."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from kubelambda.api import Function, parse_function
from kubelambda.controller.config import ControllerConfig
from kubelambda.controller.resources.meta import Owner
from kubelambda.controller.resources.networkpolicy import (
    function_network_policy,
    functions_network_policy,
)
from kubelambda.controller.resources.service import function_service


def test_service_is_headless_and_selects_the_functions_ready_pods(owner: Owner) -> None:
    service = function_service(owner=owner)
    assert service["metadata"]["name"] == "hello"
    assert service["metadata"]["namespace"] == "team-a"
    assert service["metadata"]["ownerReferences"][0]["uid"] == "uid-hello"
    assert service["spec"] == {
        "clusterIP": "None",
        "selector": {"kubelambda.dev/function": "hello"},
        "ports": [{"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}],
        "publishNotReadyAddresses": False,
    }


def shared(config: ControllerConfig) -> dict[str, Any]:
    return functions_network_policy(namespace="team-a", config=config)


def test_network_policy_admits_only_gateway_pods_of_the_gateway_namespace(
    config: ControllerConfig,
) -> None:
    policy = shared(config)
    # One per namespace, no Function's: marked kubelambda's by its labels, not an owner.
    assert policy["metadata"]["name"] == "kubelambda-functions"
    assert policy["metadata"]["namespace"] == "team-a"
    assert policy["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "kubelambda",
        "app.kubernetes.io/component": "functions",
    }
    assert "ownerReferences" not in policy["metadata"]
    spec = policy["spec"]
    # Every Function's pods (and specialised pool pods, which carry the label), nothing else.
    assert spec["podSelector"] == {
        "matchExpressions": [{"key": "kubelambda.dev/function", "operator": "Exists"}]
    }
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    rule, metrics = spec["ingress"]
    # One peer holding both selectors means "and"; two peers would mean "or".
    assert rule["from"] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kubelambda"}},
            "podSelector": {
                "matchLabels": {
                    "app.kubernetes.io/name": "kubelambda",
                    "app.kubernetes.io/component": "gateway",
                }
            },
        }
    ]
    assert rule["ports"] == [{"protocol": "TCP", "port": 8080}]
    # By default any namespace's scraper reaches the metrics port, and only that port.
    assert metrics == {
        "from": [{"namespaceSelector": {}}],
        "ports": [{"protocol": "TCP", "port": 9102}],
    }


def test_metrics_scrapers_can_be_limited_to_namespaces_or_shut_out(
    config: ControllerConfig,
) -> None:
    limited = replace(config, metrics_from=("monitoring", "observability"))
    _, metrics = shared(limited)["spec"]["ingress"]
    assert metrics["from"] == [
        {
            "namespaceSelector": {
                "matchExpressions": [
                    {
                        "key": "kubernetes.io/metadata.name",
                        "operator": "In",
                        "values": ["monitoring", "observability"],
                    }
                ]
            }
        }
    ]
    shut = replace(config, metrics_from=())
    [only] = shared(shut)["spec"]["ingress"]
    assert only["ports"] == [{"protocol": "TCP", "port": 8080}]


GATEWAY_PEER = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kubelambda"}},
    "podSelector": {
        "matchLabels": {
            "app.kubernetes.io/name": "kubelambda",
            "app.kubernetes.io/component": "gateway",
        }
    },
}
DNS = {"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}


@pytest.fixture
def hello(make_function: Callable[..., dict[str, Any]]) -> Function:
    return parse_function(make_function())


def test_function_pods_reach_only_dns_and_the_gateway_by_default(
    owner: Owner, config: ControllerConfig, hello: Function
) -> None:
    assert shared(config)["spec"]["egress"] == [
        DNS,
        {"to": [GATEWAY_PEER], "ports": [{"protocol": "TCP", "port": 8080}]},
    ]
    # A Function that declares no destination has no policy of its own.
    assert function_network_policy(hello, owner=owner, config=config) is None


def test_declared_destinations_are_added_and_open_egress_restricts_nothing(
    owner: Owner, config: ControllerConfig, make_function: Callable[..., dict[str, Any]]
) -> None:
    declared = parse_function(
        make_function(
            network={
                "egress": [
                    {"cidr": "10.0.0.1/8", "ports": [5432]},
                    {"namespace": "storage", "podLabels": {"app": "minio"}, "ports": [9000]},
                    {"namespace": "tools"},
                ]
            }
        )
    )
    own = function_network_policy(declared, owner=owner, config=config)
    assert own is not None
    assert own["metadata"]["name"] == "hello"
    assert own["metadata"]["ownerReferences"][0]["controller"] is True
    assert own["spec"]["podSelector"] == {"matchLabels": {"kubelambda.dev/function": "hello"}}
    # Egress only, and only the declared destinations: policies add up, so the shared one
    # still gives DNS and the gateway, and this one admits no new caller.
    assert own["spec"]["policyTypes"] == ["Egress"]
    assert "ingress" not in own["spec"]
    assert own["spec"]["egress"] == [
        {"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}], "ports": [{"protocol": "TCP", "port": 5432}]},
        {
            "to": [
                {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": "storage"}
                    },
                    "podSelector": {"matchLabels": {"app": "minio"}},
                }
            ],
            "ports": [{"protocol": "TCP", "port": 9000}],
        },
        {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "tools"}}}]},
    ]
    opened = replace(config, function_egress="open")
    assert function_network_policy(declared, owner=owner, config=opened) is None
    assert shared(opened)["spec"]["policyTypes"] == ["Ingress"]
    assert "egress" not in shared(opened)["spec"]


def test_announcing_pods_may_reach_the_operators_endpoint_and_nothing_more(
    config: ControllerConfig,
) -> None:
    announcing = replace(config, announce_url="http://op.kubelambda.svc:8082", announce_port=9182)
    egress = shared(announcing)["spec"]["egress"]
    assert egress == [
        DNS,
        {"to": [GATEWAY_PEER], "ports": [{"protocol": "TCP", "port": 8080}]},
        {
            "to": [
                {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": config.operator_namespace}
                    },
                    "podSelector": {"matchLabels": dict(config.operator_pod_labels)},
                }
            ],
            "ports": [{"protocol": "TCP", "port": 9182}],
        },
    ]
