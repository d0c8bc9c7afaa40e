"""The chart installed with helm on a real API server: its objects exist (no nodes, so pods stay
Pending), and its RBAC lets the operator and the gateway do what they need and nothing more."""

from __future__ import annotations

import json

import pytest

from harness.apiserver import ApiServer
from integration.chart.conftest import CHART, NAMESPACE, RELEASE
from support.waiting import wait_for


def test_install_creates_the_components(installed: ApiServer) -> None:
    status = json.loads(installed.helm("status", RELEASE, "-n", NAMESPACE, "-o", "json").stdout)
    assert status["info"]["status"] == "deployed"
    assert "kubectl apply -f examples/cluster/hello.yaml" in status["info"]["notes"]
    for kind, name in [
        ("crd", "functions.kubelambda.dev"),
        ("crd", "triggers.kubelambda.dev"),
        ("deployment", "kubelambda-operator"),
        ("deployment", "kubelambda-gateway"),
        ("service", "kubelambda-gateway"),
        ("service", "kubelambda-gateway-admin"),
        ("serviceaccount", "kubelambda-operator"),
        ("serviceaccount", "kubelambda-gateway"),
        ("secret", "kubelambda-gateway"),
        ("clusterrole", "kubelambda-operator"),
        ("clusterrolebinding", "kubelambda-gateway"),
        ("role", "kubelambda-operator-leases"),
        ("statefulset", "kubelambda-nats"),
        ("service", "kubelambda-nats"),
        ("service", "kubelambda-nats-headless"),
        ("configmap", "kubelambda-nats"),
        ("secret", "kubelambda-nats"),
        ("networkpolicy", "kubelambda-nats"),
        ("deployment", "kubelambda-dispatcher"),
        ("serviceaccount", "kubelambda-dispatcher"),
        ("secret", "kubelambda-dispatcher"),
    ]:
        installed.kubectl("get", kind, name, "-n", NAMESPACE)
    # `kubectl get kubelambda` lists Functions and Triggers together (the CRDs' category);
    # kubectl learns the category from discovery, which can lag the CRDs by a moment.
    wait_for(
        lambda: installed.kubectl("get", "kubelambda", "-A", check=False).returncode == 0,
        timeout=30,
        what="`kubectl get kubelambda` to know the category",
    )


def test_an_upgrade_keeps_the_generated_secrets(installed: ApiServer) -> None:
    kept = {
        "kubelambda-gateway": "s3-token",
        "kubelambda-wake": "token",
        "kubelambda-dispatcher": "AWS_SECRET_ACCESS_KEY",
        "kubelambda-nats": "password",
    }

    def secrets() -> dict[str, str]:
        return {
            name: installed.kubectl(
                "get", "secret", name, "-n", NAMESPACE, "-o", f"jsonpath={{.data.{key}}}"
            ).stdout
            for name, key in kept.items()
        }

    before = secrets()
    assert all(before.values()), before
    installed.helm("upgrade", RELEASE, str(CHART), "-n", NAMESPACE, "--set", "gateway.replicas=3")
    assert secrets() == before
    replicas = installed.kubectl(
        "get",
        "deployment",
        "kubelambda-gateway",
        "-n",
        NAMESPACE,
        "-o",
        "jsonpath={.spec.replicas}",
    ).stdout
    assert replicas == "3"


OPERATOR = f"system:serviceaccount:{NAMESPACE}:kubelambda-operator"
GATEWAY = f"system:serviceaccount:{NAMESPACE}:kubelambda-gateway"
DISPATCHER = f"system:serviceaccount:{NAMESPACE}:kubelambda-dispatcher"

# (who, verb, resource, namespace, allowed): what each needs, and neighbours it must not have.
RBAC = [
    (OPERATOR, "watch", "functions.kubelambda.dev", "team-a", True),
    (OPERATOR, "list", "triggers.kubelambda.dev", "team-a", True),
    (OPERATOR, "patch", "functions.kubelambda.dev/status", "team-a", True),
    (OPERATOR, "patch", "triggers.kubelambda.dev/status", "team-a", True),
    (OPERATOR, "update", "functions.kubelambda.dev/finalizers", "team-a", True),
    (OPERATOR, "patch", "triggers.kubelambda.dev", "team-a", True),
    (OPERATOR, "patch", "functions.kubelambda.dev", "team-a", False),
    (OPERATOR, "update", "functions.kubelambda.dev", "team-a", False),
    (OPERATOR, "delete", "functions.kubelambda.dev", "team-a", False),
    (OPERATOR, "create", "deployments.apps", "team-a", True),
    (OPERATOR, "patch", "deployments.apps", "team-a", True),
    (OPERATOR, "watch", "deployments.apps", "team-a", True),
    (OPERATOR, "patch", "deployments.apps/scale", "team-a", True),
    (OPERATOR, "delete", "deployments.apps", "team-a", False),
    (OPERATOR, "create", "configmaps", "team-a", True),
    (OPERATOR, "create", "services", "team-a", True),
    (OPERATOR, "create", "networkpolicies.networking.k8s.io", "team-a", True),
    # The objects a Function no longer needs: its own policy, its code ConfigMap.
    (OPERATOR, "delete", "networkpolicies.networking.k8s.io", "team-a", True),
    (OPERATOR, "delete", "configmaps", "team-a", True),
    (OPERATOR, "delete", "services", "team-a", False),
    (OPERATOR, "get", "secrets", "team-a", True),
    (OPERATOR, "list", "secrets", "team-a", False),
    # Each Function's announce Secret, created once and read when its pods announce themselves.
    (OPERATOR, "create", "secrets", "team-a", True),
    (OPERATOR, "patch", "secrets", "team-a", False),
    (OPERATOR, "delete", "secrets", "team-a", False),
    (OPERATOR, "create", "events", "team-a", True),
    (OPERATOR, "update", "leases.coordination.k8s.io", NAMESPACE, True),
    (OPERATOR, "update", "leases.coordination.k8s.io", "team-a", False),
    (OPERATOR, "create", "pods", "team-a", False),
    # Reading a pod by name: verifying its announcement (with its Function's key, not a token).
    (OPERATOR, "get", "pods", "team-a", True),
    (OPERATOR, "list", "pods", "team-a", False),
    (OPERATOR, "patch", "pods", "team-a", False),
    (OPERATOR, "create", "tokenreviews.authentication.k8s.io", "", False),
    (OPERATOR, "create", "clusterroles.rbac.authorization.k8s.io", "", False),
    (OPERATOR, "create", "customresourcedefinitions.apiextensions.k8s.io", "", False),
    (GATEWAY, "watch", "functions.kubelambda.dev", "team-a", True),
    (GATEWAY, "list", "triggers.kubelambda.dev", "team-a", True),
    (GATEWAY, "watch", "endpointslices.discovery.k8s.io", "team-a", True),
    (GATEWAY, "get", "services", "team-a", True),
    (GATEWAY, "patch", "functions.kubelambda.dev/status", "team-a", False),
    (GATEWAY, "create", "functions.kubelambda.dev", "team-a", False),
    (GATEWAY, "patch", "deployments.apps/scale", "team-a", False),
    (GATEWAY, "get", "deployments.apps", "team-a", False),
    (GATEWAY, "get", "secrets", "team-a", False),
    (GATEWAY, "list", "secrets", "team-a", False),
    (GATEWAY, "watch", "secrets", NAMESPACE, True),  # the access keys, in its own namespace
    (GATEWAY, "create", "secrets", NAMESPACE, False),
    (GATEWAY, "list", "pods", "team-a", False),
    (GATEWAY, "create", "events", "team-a", False),
    (GATEWAY, "get", "configmaps", "team-a", False),
    # The dispatchers read the specs of the queue and kafka Triggers they poll, and the Secrets
    # those name, by name; they write nothing.
    (DISPATCHER, "watch", "triggers.kubelambda.dev", "team-a", True),
    (DISPATCHER, "list", "functions.kubelambda.dev", "team-a", True),
    (DISPATCHER, "get", "secrets", "team-a", True),
    (DISPATCHER, "list", "secrets", "team-a", False),
    (DISPATCHER, "patch", "triggers.kubelambda.dev/status", "team-a", False),
    (DISPATCHER, "list", "pods", NAMESPACE, False),
    (DISPATCHER, "create", "events", NAMESPACE, False),
]


@pytest.mark.parametrize(
    ("who", "verb", "resource", "namespace", "allowed"),
    RBAC,
    ids=[f"{w.rsplit(':', 1)[1]} {v} {r}{' in ' + n if n else ''}" for w, v, r, n, _ in RBAC],
)
def test_rbac(
    installed: ApiServer, who: str, verb: str, resource: str, namespace: str, allowed: bool
) -> None:
    assert_can_i(installed, who, verb, resource, namespace, allowed)


def assert_can_i(
    server: ApiServer, who: str, verb: str, resource: str, namespace: str, allowed: bool
) -> None:
    """`kubectl auth can-i` as `who` answers as `allowed` says (namespace "": cluster-wide)."""
    where = ["-n", namespace] if namespace else []
    resource_name, _, subresource = resource.partition("/")
    extra = [f"--subresource={subresource}"] if subresource else []
    answer = server.kubectl(
        "auth", "can-i", verb, resource_name, *extra, *where, f"--as={who}", check=False
    )
    assert answer.stdout.strip() == ("yes" if allowed else "no"), answer.stdout + answer.stderr


# A release that serves named namespaces only (and reads apiKey Secrets): its rights are bound
# there and nowhere else.
NARROW = "kubelambda-narrow"
NARROW_OPERATOR = f"system:serviceaccount:{NARROW}:{NARROW}-operator"
NARROW_GATEWAY = f"system:serviceaccount:{NARROW}:{NARROW}-gateway"
NARROW_RBAC = [
    (NARROW_OPERATOR, "create", "deployments.apps", "team-n", True),
    (NARROW_OPERATOR, "create", "deployments.apps", "team-a", False),
    (NARROW_OPERATOR, "create", "networkpolicies.networking.k8s.io", "team-n", True),
    (NARROW_OPERATOR, "create", "networkpolicies.networking.k8s.io", "team-a", False),
    (NARROW_OPERATOR, "get", "secrets", "team-n", True),
    (NARROW_OPERATOR, "get", "secrets", "team-a", False),
    (NARROW_OPERATOR, "list", "functions.kubelambda.dev", "", False),
    (NARROW_OPERATOR, "create", "secrets", "team-n", True),
    (NARROW_OPERATOR, "create", "secrets", "team-a", False),
    (NARROW_OPERATOR, "get", "pods", "team-n", True),
    (NARROW_OPERATOR, "get", "pods", "team-a", False),
    # Announcements need no cluster-wide right any more.
    (NARROW_OPERATOR, "create", "tokenreviews.authentication.k8s.io", "", False),
    (NARROW_GATEWAY, "watch", "functions.kubelambda.dev", "team-n", True),
    (NARROW_GATEWAY, "watch", "functions.kubelambda.dev", "team-a", False),
    (NARROW_GATEWAY, "watch", "endpointslices.discovery.k8s.io", "", False),
    (NARROW_GATEWAY, "watch", "secrets", NARROW, True),
    # readApiKeySecrets: the Secrets apiKey Triggers name, by name, where it serves only
    (NARROW_GATEWAY, "get", "secrets", "team-n", True),
    (NARROW_GATEWAY, "list", "secrets", "team-n", False),
    (NARROW_GATEWAY, "watch", "secrets", "team-n", False),
    (NARROW_GATEWAY, "get", "secrets", "team-a", False),
]


@pytest.fixture(scope="module")
def narrow(installed: ApiServer) -> ApiServer:
    installed.kubectl("create", "namespace", "team-n", check=False)
    installed.helm(
        "install",
        NARROW,
        str(CHART),
        "--namespace",
        NARROW,
        "--create-namespace",
        "--wait=false",
        "--set",
        "functionNamespaces={team-n}",
        "--set",
        "gateway.readApiKeySecrets=true",
    )
    return installed


@pytest.mark.parametrize(
    ("who", "verb", "resource", "namespace", "allowed"),
    NARROW_RBAC,
    ids=[f"{w.rsplit(':', 1)[1]} {v} {r} in {n or 'all'}" for w, v, r, n, _ in NARROW_RBAC],
)
def test_rbac_of_a_release_for_named_namespaces(
    narrow: ApiServer, who: str, verb: str, resource: str, namespace: str, allowed: bool
) -> None:
    assert_can_i(narrow, who, verb, resource, namespace, allowed)
