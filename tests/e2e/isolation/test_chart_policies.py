"""Issue 16, isolation enforced: the chart's own NetworkPolicies hold under the node's engine
(tests/harness/netpol.py). Only pods with the gateway's, dispatcher's or operator's labels reach
the broker's client port, and no pod its monitoring port; only the gateway's reach the operator's
wake port, whose health, metrics and announcement ports answer any pod. Ports and labels are read
from the installed policies and pods; with KUBELAMBDA_E2E_NO_NETPOL=1 every refusal assertion
fails.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from e2e.isolation.probes import answered_eventually, client_pod, probe, wait_started
from e2e.kit import Installed
from harness.cluster import Cluster
from harness.release import SELECTOR, enforce_restricted

OTHER_NAMESPACE = "kl-chart-other"  # plain pods outside the release's namespace
PLAIN = "chart-plain"  # a pod with no component's labels, in the release's namespace and OTHER
AS_DISPATCHER = "chart-as-dispatcher"  # pods carrying a component's selector labels, in the
AS_GATEWAY = "chart-as-gateway"  # release's namespace, never Ready (so in no Service)
PROBE_LABELS = {"app": "chart-policy-probe"}
COMPONENT = "app.kubernetes.io/component"

Admitted = list[dict[str, str]] | None  # matchLabels of the pods let in on a port; None: any pod


@dataclass(frozen=True)
class Guarded:
    """A release pod one of the chart's NetworkPolicies selects, and what its rules admit."""

    ip: str
    ports: dict[str, int]  # the pod's container ports by name, which the policies use
    admitted: dict[str, Admitted]  # by port name

    def target(self, port: str, path: str | None = None) -> str:
        """A PROBE target: an HTTP GET of `path`, or with no path, the server's first line."""
        address = f"{self.ip}:{self.ports[port]}"
        return address if path is None else f"{address}/{path}"


@dataclass(frozen=True)
class Scene:
    namespace: str  # the release's
    nats: Guarded
    operator: Guarded


def _selector(labels: Mapping[str, str]) -> str:
    return ",".join(f"{key}={value}" for key, value in labels.items())


def _admitted(spec: dict[str, Any], name: str, number: int) -> Admitted:
    """Who the policy's ingress rules let in on the port `name` (`number`): a rule without
    `from` admits every pod, one without `ports` every port."""
    found: list[dict[str, str]] = []
    for rule in spec.get("ingress", []):
        ports = [entry.get("port") for entry in rule.get("ports", [{}])]
        if not any(port in (None, name, number) for port in ports):
            continue
        if not rule.get("from"):
            return None
        for peer in rule["from"]:
            if set(peer) != {"podSelector"}:
                pytest.fail(f"a peer this test does not model (only podSelector): {peer}")
            found.append(dict(peer["podSelector"]["matchLabels"]))
    return found


def _guarded(running: Cluster, namespace: str, component: str) -> Guarded:
    """The release's NetworkPolicy for `component`, read against a Ready pod it selects."""
    policies = running.get(
        "networkpolicies", "-n", namespace, "-l", f"{SELECTOR},{COMPONENT}={component}"
    )["items"]
    if len(policies) != 1:
        names = [p["metadata"]["name"] for p in policies]
        pytest.fail(f"expected one NetworkPolicy for the {component} in {namespace}: {names}")
    spec = policies[0]["spec"]
    if spec.get("policyTypes") != ["Ingress"]:
        pytest.fail(f"the {component}'s policy is not ingress-only: {spec.get('policyTypes')}")
    pods = running.ready_pods(namespace, _selector(spec["podSelector"]["matchLabels"]))
    if not pods:
        pytest.fail(f"no Ready pod matches the {component}'s NetworkPolicy: {spec['podSelector']}")
    ports = {
        port["name"]: int(port["containerPort"])
        for container in pods[0]["spec"]["containers"]
        for port in container.get("ports", [])
        if "name" in port
    }
    return Guarded(
        ip=pods[0]["status"]["podIP"],
        ports=ports,
        admitted={name: _admitted(spec, name, number) for name, number in ports.items()},
    )


def _components(admitted: Admitted) -> set[str]:
    return {labels.get(COMPONENT, "") for labels in admitted or []}


def _labels_admitted(guarded: Guarded, port: str, component: str) -> dict[str, str]:
    """The labels a pod of `component` must carry to be let in on `port`."""
    for labels in guarded.admitted[port] or []:
        if labels.get(COMPONENT) == component:
            return labels
    pytest.fail(f"no rule admits the {component} on port {port}: {guarded.admitted[port]}")


@pytest.fixture(scope="module")
def scene(e2e_cluster: Cluster, installed: Installed) -> Iterator[Scene]:
    """The broker's and the operator's policies as installed; a plain client pod in the release's
    namespace and in OTHER_NAMESPACE, and two with the dispatcher's and the gateway's labels."""
    namespace = installed.namespace
    nats = _guarded(e2e_cluster, namespace, "nats")
    operator = _guarded(e2e_cluster, namespace, "operator")
    impersonating = {
        AS_DISPATCHER: _labels_admitted(nats, "client", "dispatcher"),
        AS_GATEWAY: _labels_admitted(operator, "wake", "gateway"),
    }
    image = e2e_cluster.images.runtime.name
    enforce_restricted(e2e_cluster, (OTHER_NAMESPACE,))
    try:
        e2e_cluster.apply(
            [
                client_pod(PLAIN, namespace, image, labels=PROBE_LABELS),
                client_pod(PLAIN, OTHER_NAMESPACE, image, labels=PROBE_LABELS),
                *(
                    client_pod(
                        pod, namespace, image, labels={**PROBE_LABELS, **labels}, never_ready=True
                    )
                    for pod, labels in impersonating.items()
                ),
            ]
        )
        wait_started(e2e_cluster, namespace, PLAIN, *impersonating)
        wait_started(e2e_cluster, OTHER_NAMESPACE, PLAIN)
        yield Scene(namespace=namespace, nats=nats, operator=operator)
    finally:
        # Waited for: later scenarios select the release's pods by these labels.
        e2e_cluster.kubectl(
            "delete",
            "pod",
            PLAIN,
            *impersonating,
            "-n",
            namespace,
            "--ignore-not-found",
            "--timeout=60s",
            timeout=70,
            check=False,
        )
        e2e_cluster.kubectl("delete", "namespace", OTHER_NAMESPACE, "--wait=false", check=False)


def _namespace(scene: Scene, where: str) -> str:
    return scene.namespace if where == "release" else OTHER_NAMESPACE


def test_the_policies_admit_the_release_components(e2e_cluster: Cluster, scene: Scene) -> None:
    """What the probe pods' labels stand for: each selector a policy admits matches a Ready pod
    of the release, so a client carrying it is that component as far as the engine can tell."""
    assert _components(scene.nats.admitted["client"]) == {"gateway", "dispatcher", "operator"}
    assert scene.nats.admitted["monitor"] == [], scene.nats.admitted
    assert _components(scene.operator.admitted["wake"]) == {"gateway"}
    assert scene.operator.admitted["health"] is None, scene.operator.admitted
    assert scene.operator.admitted["metrics"] is None, scene.operator.admitted
    assert scene.operator.admitted["announce"] is None, scene.operator.admitted
    for labels in [
        *(scene.nats.admitted["client"] or []),
        *(scene.operator.admitted["wake"] or []),
    ]:
        assert e2e_cluster.ready_pods(scene.namespace, _selector(labels)), (
            f"no Ready pod of the release carries {labels}"
        )


@pytest.mark.parametrize("where", ["release", "other"], ids=["release-namespace", "elsewhere"])
def test_the_operator_health_metrics_and_announcement_ports_answer_any_pod(
    e2e_cluster: Cluster, scene: Scene, where: str
) -> None:
    """The announcement port too: an announcing pod is one the engine cannot know yet (the
    kubelet has not reported its address); its token, not the network, admits it."""
    namespace = _namespace(scene, where)
    for target in (
        scene.operator.target("health", "healthz"),
        scene.operator.target("metrics", "metrics"),
        scene.operator.target("announce", "healthz"),
    ):
        found = answered_eventually(e2e_cluster, namespace, PLAIN, target)
        assert found["outcome"] == "answered", f"a plain pod in {namespace}: {found}"
        assert " 200" in found["status"], found


@pytest.mark.parametrize("where", ["release", "other"], ids=["release-namespace", "elsewhere"])
def test_a_plain_pod_times_out_on_the_broker_and_the_wake_port(
    e2e_cluster: Cluster, scene: Scene, where: str
) -> None:
    namespace = _namespace(scene, where)
    broker, wake = scene.nats.target("client"), scene.operator.target("wake", "healthz")
    # The open health port first: the engine knows this pod, so a timeout below is a refusal.
    control = answered_eventually(
        e2e_cluster, namespace, PLAIN, scene.operator.target("health", "healthz")
    )
    assert control["outcome"] == "answered", f"a plain pod in {namespace}: {control}"

    found = probe(e2e_cluster, namespace, PLAIN, broker, wake)

    assert found[broker]["outcome"] == "timeout", f"broker from {namespace}: {found[broker]}"
    assert found[wake]["outcome"] == "timeout", f"wake port from {namespace}: {found[wake]}"


@pytest.mark.parametrize("pod", [AS_DISPATCHER, AS_GATEWAY])
def test_component_labels_reach_the_brokers_client_port_not_its_monitor(
    e2e_cluster: Cluster, scene: Scene, pod: str
) -> None:
    broker, monitor = scene.nats.target("client"), scene.nats.target("monitor", "healthz")

    client = answered_eventually(e2e_cluster, scene.namespace, pod, broker)
    elsewhere = probe(e2e_cluster, scene.namespace, pod, monitor)[monitor]

    assert client["outcome"] == "answered", f"{pod} -> broker: {client}"
    assert client["status"].startswith("INFO "), f"not NATS's greeting: {client}"
    assert elsewhere["outcome"] == "timeout", f"{pod} -> the broker's monitor port: {elsewhere}"


def test_only_the_gateway_labels_reach_the_wake_port(e2e_cluster: Cluster, scene: Scene) -> None:
    wake = scene.operator.target("wake", "healthz")

    gateway = answered_eventually(e2e_cluster, scene.namespace, AS_GATEWAY, wake)
    dispatcher = probe(e2e_cluster, scene.namespace, AS_DISPATCHER, wake)[wake]

    assert gateway["outcome"] == "answered", f"{AS_GATEWAY} -> wake: {gateway}"
    assert gateway["status"].startswith("HTTP/"), gateway
    assert dispatcher["outcome"] == "timeout", f"{AS_DISPATCHER} -> wake: {dispatcher}"
