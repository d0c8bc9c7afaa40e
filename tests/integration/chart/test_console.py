"""The chart's console: off unless asked; when on, its own hardened Deployment behind a ClusterIP
Service, told where Prometheus is, with a ServiceAccount that may read Functions, Triggers and
Deployments and nothing else, and pods and their logs only with console.readLogs (`kubectl auth
can-i` against a real API server)."""

from __future__ import annotations

from typing import Any

import pytest

from harness.apiserver import ApiServer
from integration.chart.conftest import CHART
from integration.chart.test_install import assert_can_i
from integration.chart.test_render import find, render

CONSOLE = "kubelambda-console"
ON = "console.enabled=true"


def _console_objects(docs: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {
        (d["kind"], d["metadata"]["name"])
        for d in docs
        if d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "console"
    }


def test_the_console_is_off_by_default() -> None:
    assert _console_objects(render()) == set()


def test_the_console_runs_hardened_behind_a_cluster_ip_service() -> None:
    docs = render(ON, "image.repository=registry.example/kl", "image.tag=1.2.3")
    assert _console_objects(docs) == {
        ("ServiceAccount", CONSOLE),
        ("ClusterRole", CONSOLE),
        ("ClusterRoleBinding", CONSOLE),
        ("Deployment", CONSOLE),
        ("Service", CONSOLE),
    }
    pod = find(docs, "Deployment", CONSOLE)["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == CONSOLE
    assert pod["securityContext"]["runAsNonRoot"] is True
    [container] = pod["containers"]
    assert container["image"] == "registry.example/kl:1.2.3"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["resources"]["limits"]["memory"]
    assert container["args"] == [
        "console",
        "--host=0.0.0.0",
        "--port=8090",
        "--prometheus=http://prometheus-server.monitoring.svc:9090",
    ]
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    service = find(docs, "Service", CONSOLE)["spec"]
    assert service["type"] == "ClusterIP"
    assert service["ports"] == [{"name": "http", "port": 80, "targetPort": "http"}]
    assert service["selector"]["app.kubernetes.io/component"] == "console"
    labels = find(docs, "Deployment", CONSOLE)["spec"]["template"]["metadata"]["labels"]
    assert service["selector"].items() <= labels.items()


def test_the_console_may_only_read_functions_triggers_and_deployments() -> None:
    rules = find(render(ON), "ClusterRole", CONSOLE)["rules"]
    assert rules == [
        {
            "apiGroups": ["kubelambda.dev"],
            "resources": ["functions", "triggers"],
            "verbs": ["get", "list", "watch"],
        },
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list", "watch"]},
    ]


def test_with_read_logs_the_console_may_list_pods_and_get_their_logs_and_is_told_so() -> None:
    docs = render(ON, "console.readLogs=true")
    rules = find(docs, "ClusterRole", CONSOLE)["rules"]
    assert rules[2:] == [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
        {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
    ]
    args = find(docs, "Deployment", CONSOLE)["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--read-logs" in args
    default = find(render(ON), "Deployment", CONSOLE)["spec"]["template"]["spec"]
    assert "--read-logs" not in default["containers"][0]["args"]


def test_with_named_namespaces_the_console_reads_those_only() -> None:
    docs = render(ON, "functionNamespaces={team-a,team-b}", "console.port=9000")
    args = find(docs, "Deployment", CONSOLE)["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--port=9000" in args
    assert [a for a in args if a.startswith("--namespace=")] == [
        "--namespace=team-a",
        "--namespace=team-b",
    ]
    bindings = [
        d
        for d in docs
        if d["kind"] in ("RoleBinding", "ClusterRoleBinding") and d["roleRef"]["name"] == CONSOLE
    ]
    assert sorted((d["kind"], d["metadata"]["namespace"]) for d in bindings) == [
        ("RoleBinding", "team-a"),
        ("RoleBinding", "team-b"),
    ]


# A release of its own with the console on (the session's release keeps the defaults).
RELEASE = "kubelambda-console"
WHO = f"system:serviceaccount:{RELEASE}:{RELEASE}-console"
RBAC = [
    (WHO, "get", "functions.kubelambda.dev", "team-a", True),
    (WHO, "list", "functions.kubelambda.dev", "", True),
    (WHO, "watch", "functions.kubelambda.dev", "team-a", True),
    (WHO, "list", "triggers.kubelambda.dev", "team-a", True),
    (WHO, "watch", "triggers.kubelambda.dev", "", True),
    (WHO, "list", "deployments.apps", "team-a", True),
    (WHO, "get", "deployments.apps", "team-a", True),
    (WHO, "create", "functions.kubelambda.dev", "team-a", False),
    (WHO, "patch", "functions.kubelambda.dev", "team-a", False),
    (WHO, "delete", "triggers.kubelambda.dev", "team-a", False),
    (WHO, "patch", "functions.kubelambda.dev/status", "team-a", False),
    (WHO, "patch", "deployments.apps", "team-a", False),
    (WHO, "patch", "deployments.apps/scale", "team-a", False),
    (WHO, "get", "secrets", "team-a", False),
    (WHO, "list", "secrets", RELEASE, False),
    (WHO, "list", "configmaps", "team-a", False),
    (WHO, "list", "pods", "team-a", False),
    (WHO, "get", "pods/log", "team-a", False),
    (WHO, "get", "pods", "team-a", False),
    (WHO, "list", "services", "team-a", False),
    (WHO, "list", "endpointslices.discovery.k8s.io", "team-a", False),
    (WHO, "update", "leases.coordination.k8s.io", RELEASE, False),
]

# Another release with console.readLogs=true: pods listed and their logs read, nothing more.
LOGS_RELEASE = "kubelambda-logs"
READER = f"system:serviceaccount:{LOGS_RELEASE}:{LOGS_RELEASE}-console"
LOGS_RBAC = [
    (READER, "list", "pods", "team-a", True),
    (READER, "list", "pods", "", True),
    (READER, "get", "pods/log", "team-a", True),
    (READER, "get", "pods", "team-a", False),
    (READER, "watch", "pods", "team-a", False),
    (READER, "create", "pods/exec", "team-a", False),
    (READER, "create", "pods/portforward", "team-a", False),
    (READER, "delete", "pods", "team-a", False),
    (READER, "get", "secrets", "team-a", False),
    (READER, "list", "functions.kubelambda.dev", "team-a", True),
    (READER, "patch", "deployments.apps", "team-a", False),
]


@pytest.fixture(scope="module")
def with_console(installed: ApiServer) -> ApiServer:
    installed.helm(
        "install",
        RELEASE,
        str(CHART),
        "--namespace",
        RELEASE,
        "--create-namespace",
        "--wait=false",
        "--set",
        ON,
    )
    return installed


def test_install_creates_the_console(with_console: ApiServer) -> None:
    found = with_console.kubectl(
        "get",
        "deployment,service,serviceaccount",
        "-l",
        "app.kubernetes.io/component=console",
        "-n",
        RELEASE,
        "-o",
        "name",
    )
    assert sorted(found.stdout.split()) == [
        f"deployment.apps/{RELEASE}-console",
        f"service/{RELEASE}-console",
        f"serviceaccount/{RELEASE}-console",
    ]


@pytest.mark.parametrize(
    ("who", "verb", "resource", "namespace", "allowed"),
    RBAC,
    ids=[f"console {v} {r} in {n or 'all'}" for _, v, r, n, _ in RBAC],
)
def test_rbac_of_the_console(
    with_console: ApiServer, who: str, verb: str, resource: str, namespace: str, allowed: bool
) -> None:
    assert_can_i(with_console, who, verb, resource, namespace, allowed)


@pytest.fixture(scope="module")
def with_log_reading_console(with_console: ApiServer) -> ApiServer:
    with_console.helm(
        "install",
        LOGS_RELEASE,
        str(CHART),
        "--namespace",
        LOGS_RELEASE,
        "--create-namespace",
        "--wait=false",
        "--set",
        ON,
        "--set",
        "console.readLogs=true",
    )
    return with_console


@pytest.mark.parametrize(
    ("who", "verb", "resource", "namespace", "allowed"),
    LOGS_RBAC,
    ids=[f"log-reading console {v} {r} in {n or 'all'}" for _, v, r, n, _ in LOGS_RBAC],
)
def test_rbac_of_a_console_that_reads_logs(
    with_log_reading_console: ApiServer,
    who: str,
    verb: str,
    resource: str,
    namespace: str,
    allowed: bool,
) -> None:
    assert_can_i(with_log_reading_console, who, verb, resource, namespace, allowed)
