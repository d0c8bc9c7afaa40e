"""resources/service.py and networkpolicy.py: the Service and the NetworkPolicy of a Function."""

from __future__ import annotations

from dataclasses import replace

from kubelambda.controller.config import ControllerConfig
from kubelambda.controller.resources.meta import Owner
from kubelambda.controller.resources.networkpolicy import function_network_policy
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


def test_network_policy_admits_only_gateway_pods_of_the_gateway_namespace(
    owner: Owner, config: ControllerConfig
) -> None:
    policy = function_network_policy(owner=owner, config=config)
    assert policy["metadata"]["ownerReferences"][0]["controller"] is True
    spec = policy["spec"]
    assert spec["podSelector"] == {"matchLabels": {"kubelambda.dev/function": "hello"}}
    assert spec["policyTypes"] == ["Ingress"]
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
    owner: Owner, config: ControllerConfig
) -> None:
    limited = replace(config, metrics_from=("monitoring", "observability"))
    _, metrics = function_network_policy(owner=owner, config=limited)["spec"]["ingress"]
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
    [only] = function_network_policy(owner=owner, config=shut)["spec"]["ingress"]
    assert only["ports"] == [{"protocol": "TCP", "port": 8080}]
