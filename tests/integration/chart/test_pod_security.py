"""Pod Security admission at `restricted`, enforced by a real API server: every pod the chart
makes (default values, and every optional part on) and every pod the operator makes for a
Function is admitted into a namespace labelled to enforce the profile, and pods that break it
are refused there (so the admission being checked is real).

Nothing runs pods here (no node): each workload's pod template is submitted as a Pod with
server-side dry-run, which goes through admission as a real pod would.
"""

from __future__ import annotations

import copy
import json
import subprocess
from collections.abc import Callable
from types import MappingProxyType
from typing import Any

import pytest
import yaml

from harness.apiserver import ApiServer
from harness.release import RESTRICTED_LABELS, enforce_restricted, refused_pods
from integration.chart.conftest import CHART
from kubelambda.api import parse_function
from kubelambda.api.fetchplan import FetchPlan, PlannedZip
from kubelambda.controller.config import ControllerConfig
from kubelambda.controller.resources.code import CodeMount, inline_code_mount
from kubelambda.controller.resources.deployment import function_deployment, with_replicas
from kubelambda.controller.resources.meta import Owner
from kubelambda.controller.resources.packages import PackageFetch

RELEASE_NAMESPACE = "pss-release"
FUNCTIONS_NAMESPACE = "pss-functions"
# What an admin puts on a namespace to enforce the profile; `warn` too, so that workloads
# (which `enforce` does not check, only their pods) answer with a warning when they would fail.
RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
    "pod-security.kubernetes.io/warn": "restricted",
    "pod-security.kubernetes.io/warn-version": "latest",
}
REFUSED = 'violates PodSecurity "restricted:latest"'
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob")


@pytest.fixture(scope="module")
def restricted(chart_api: ApiServer) -> ApiServer:
    """The chart's API server with two namespaces enforcing `restricted`."""
    namespaces = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": RESTRICTED}}
        for name in (RELEASE_NAMESPACE, FUNCTIONS_NAMESPACE)
    ]
    chart_api.kubectl(
        "apply",
        "-f",
        "-",
        input=json.dumps({"apiVersion": "v1", "kind": "List", "items": namespaces}),
    )
    return chart_api


def submit(api: ApiServer, obj: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    """Create ``obj`` with server-side dry-run: admission runs in full, nothing is stored."""
    return api.kubectl(
        "create", "--dry-run=server", "-o", "name", "-f", "-", input=json.dumps(obj), check=False
    )


def assert_admitted(api: ApiServer, obj: dict[str, Any]) -> None:
    done = submit(api, obj)
    what = f"{obj['kind']} {obj['metadata']['name']}"
    assert done.returncode == 0, f"{what} refused:\n{done.stderr}"
    assert "PodSecurity" not in done.stderr, f"{what} warned:\n{done.stderr}"


def pod_of(workload: dict[str, Any], namespace: str) -> dict[str, Any]:
    """The pod a controller would make from ``workload``: its template, and for a StatefulSet
    the claims of its volumeClaimTemplates, as the StatefulSet controller adds them."""
    spec = workload["spec"]
    jobs = spec["jobTemplate"]["spec"] if workload["kind"] == "CronJob" else spec
    template = jobs["template"]
    pod_spec = copy.deepcopy(template["spec"])
    name = workload["metadata"]["name"]
    for claim in spec.get("volumeClaimTemplates", []):
        claim_name = claim["metadata"]["name"]
        pod_spec.setdefault("volumes", []).append(
            {"name": claim_name, "persistentVolumeClaim": {"claimName": f"{claim_name}-{name}-0"}}
        )
    meta = template.get("metadata") or {}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{name}-0",
            "namespace": namespace,
            "labels": meta.get("labels") or {},
            "annotations": meta.get("annotations") or {},
        },
        "spec": pod_spec,
    }


def numeric_non_root_users(pod: dict[str, Any]) -> bool:
    """Every container runs as a numeric, non-zero user the pod names: `restricted` asks only
    for runAsNonRoot, and the kubelet refuses to start an image whose USER is a name then."""
    spec = pod["spec"]
    default = (spec.get("securityContext") or {}).get("runAsUser")
    containers = spec.get("initContainers", []) + spec["containers"]
    users = [(c.get("securityContext") or {}).get("runAsUser", default) for c in containers]
    return all(isinstance(user, int) and user > 0 for user in users)


def render(api: ApiServer, *sets: str) -> list[dict[str, Any]]:
    args = [arg for value in sets for arg in ("--set", value)]
    out = api.helm("template", "kubelambda", str(CHART), "-n", RELEASE_NAMESPACE, *args).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


EVERY_PART_ON = (
    "console.enabled=true",
    "nats.replicas=3",
    "nats.storage.storageClassName=fast",
    "dispatcher.eventSources=true",
    "monitoring.podMonitor.enabled=true",
    "monitoring.serviceMonitor.enabled=true",
    "monitoring.rules.enabled=true",
    "monitoring.dashboard.enabled=true",
    "runtime.images.python3\\.13=localhost/rt313:1",
    "functionNamespaces={team-a,team-b}",
    "gateway.readApiKeySecrets=true",
    "gateway.s3TokenSecret=my-token",
)
CHART_CASES = {
    "defaults": ((), {"operator", "gateway", "dispatcher", "nats"}),
    "every part on": (EVERY_PART_ON, {"operator", "gateway", "dispatcher", "nats", "console"}),
    "an external broker": (
        ("nats.install=false", "nats.url=nats://nats.messaging:4222", "nats.credentialsSecret=n"),
        {"operator", "gateway", "dispatcher"},
    ),
    "no broker": (("nats.install=false",), {"operator", "gateway"}),
}


@pytest.mark.parametrize("case", list(CHART_CASES))
def test_every_pod_of_the_chart_is_admitted(restricted: ApiServer, case: str) -> None:
    sets, components = CHART_CASES[case]
    docs = render(restricted, *sets)
    workloads = [doc for doc in docs if doc["kind"] in WORKLOAD_KINDS]
    found = {w["metadata"]["name"].removeprefix("kubelambda-") for w in workloads}
    assert found == components, f"the chart renders {found}; this test knows {components}"
    assert not any(doc["kind"] == "Pod" for doc in docs), "a bare pod (a hook?) to check too"
    for workload in workloads:
        workload["metadata"]["namespace"] = RELEASE_NAMESPACE
        pod = pod_of(workload, RELEASE_NAMESPACE)
        assert_admitted(restricted, pod)
        assert numeric_non_root_users(pod), pod["spec"]
        # The workload too: with `warn`, the API server says if its pods would be refused.
        assert_admitted(restricted, workload)


S3_CODE = {"s3": {"bucket": "code", "key": "app.zip", "credentialsSecret": {"name": "minio"}}}
LAYERS = [{"s3": {"bucket": "layers", "key": "deps.zip"}}]
PLAN = FetchPlan(
    zips=(
        PlannedZip(
            target="task",
            what="spec.code.s3 (s3://code/app.zip)",
            bucket="code",
            key="app.zip",
            sha256="a" * 64,
            endpoint="http://minio.storage:9000",
            credentials=0,
        ),
        PlannedZip(
            target="opt",
            what="spec.layers[0].s3 (s3://layers/deps.zip)",
            bucket="layers",
            key="deps.zip",
            sha256="b" * 64,
        ),
    ),
    secrets=("minio",),
)
FETCH = PackageFetch(plan=PLAN, image="localhost/kubelambda:0.1.0", region="us-east-1")
INLINE = {"inline": {"files": {"app.py": "def handler(event, context):\n    return event\n"}}}
SECRET_ENV = [
    {"name": "GREETING", "value": "hi"},
    {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "api", "key": "token"}}},
]
# name -> (spec, the code mount the reconciler would give it, the packages it fetches)
FUNCTIONS: dict[str, tuple[dict[str, Any], CodeMount | None, PackageFetch | None]] = {
    "inline": (
        {"runtime": "python3.12", "handler": "app.handler", "code": INLINE},
        inline_code_mount(INLINE["inline"]["files"], function_name="inline"),
        None,
    ),
    "config-map-code": (
        {
            "runtime": "python3.12",
            "handler": "app.handler",
            "code": {"configMapRef": {"name": "c"}},
        },
        CodeMount("c"),
        None,
    ),
    "package-and-layers": (
        {"runtime": "python3.12", "handler": "app.handler", "code": S3_CODE, "layers": LAYERS},
        None,
        FETCH,
    ),
    "custom-runtime": ({"runtime": "provided.al2023", "code": S3_CODE}, None, FETCH),
    "big-with-secret-env": (
        {
            "runtime": "python3.12",
            "handler": "app.handler",
            "code": INLINE,
            "memoryMB": 10240,
            "timeoutSeconds": 900,
            "env": SECRET_ENV,
        },
        inline_code_mount(INLINE["inline"]["files"], function_name="big-with-secret-env"),
        None,
    ),
    "own-image": ({"image": "registry.example/fn:1"}, None, None),
}
CONFIG = ControllerConfig(
    runtime_images=MappingProxyType(
        {"python3.12": "localhost/kubelambda-runtime:0.1.0", "provided.al2023": "localhost/rt:1"}
    ),
    fetch_image="localhost/kubelambda:0.1.0",
    announce_url="http://kubelambda-operator.kubelambda.svc:8083",
)


def function_workload(name: str) -> dict[str, Any]:
    """The Deployment the operator creates for FUNCTIONS[name], in the restricted namespace."""
    spec, code, packages = FUNCTIONS[name]
    function = parse_function(
        {
            "apiVersion": "kubelambda.dev/v1alpha1",
            "kind": "Function",
            "metadata": {"name": name, "namespace": FUNCTIONS_NAMESPACE, "uid": f"uid-{name}"},
            "spec": spec,
        }
    )
    image = function.image or CONFIG.runtime_images[str(function.runtime)]
    deployment = function_deployment(
        function,
        owner=Owner(name=name, namespace=FUNCTIONS_NAMESPACE, uid=f"uid-{name}"),
        image=image,
        code=code,
        code_hash=None if code is None else "sha256:abc",
        config=CONFIG,
        packages=packages,
    )
    created = with_replicas(deployment, 1)
    # The owner (the Function) is not stored here: the reference would only be dangling.
    created["metadata"].pop("ownerReferences", None)
    return created


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_every_function_pod_is_admitted(restricted: ApiServer, name: str) -> None:
    workload = function_workload(name)
    pod = pod_of(workload, FUNCTIONS_NAMESPACE)
    if FUNCTIONS[name][2] is not None:
        assert pod["spec"]["initContainers"], "this case is meant to have the fetching container"
    assert_admitted(restricted, pod)
    assert numeric_non_root_users(pod), pod["spec"]
    assert_admitted(restricted, workload)


def _container(pod: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = pod["spec"]["containers"][0]
    return container


def _may_run_as_root(pod: dict[str, Any]) -> None:
    pod["spec"]["securityContext"].pop("runAsNonRoot")
    _container(pod)["securityContext"].pop("runAsNonRoot")


# Each breaks one rule of the profile on an otherwise admitted pod (the gateway's).
BREAKS: dict[str, Callable[[dict[str, Any]], None]] = {
    "no seccomp profile": lambda pod: pod["spec"]["securityContext"].pop("seccompProfile"),
    "may run as root": _may_run_as_root,
    "runs as uid 0": lambda pod: pod["spec"]["securityContext"].update(runAsUser=0),
    "privilege escalation": lambda pod: _container(pod)["securityContext"].pop(
        "allowPrivilegeEscalation"
    ),
    "a capability": lambda pod: _container(pod)["securityContext"].update(
        capabilities={"drop": ["ALL"], "add": ["NET_ADMIN"]}
    ),
    "a hostPath volume": lambda pod: pod["spec"]["volumes"].append(
        {"name": "host", "hostPath": {"path": "/var/run"}}
    ),
    "a host port": lambda pod: _container(pod)["ports"].append(
        {"containerPort": 9999, "hostPort": 9999}
    ),
    "the host network": lambda pod: pod["spec"].update(hostNetwork=True),
}


@pytest.fixture(scope="module")
def gateway_pod(restricted: ApiServer) -> dict[str, Any]:
    [gateway] = [
        doc
        for doc in render(restricted)
        if doc["kind"] == "Deployment" and doc["metadata"]["name"] == "kubelambda-gateway"
    ]
    pod = pod_of(gateway, RELEASE_NAMESPACE)
    assert submit(restricted, pod).returncode == 0, "the unbroken pod should be admitted"
    return pod


@pytest.mark.parametrize("case", list(BREAKS))
def test_a_pod_breaking_the_profile_is_refused(
    restricted: ApiServer, gateway_pod: dict[str, Any], case: str
) -> None:
    pod = copy.deepcopy(gateway_pod)
    BREAKS[case](pod)
    done = submit(restricted, pod)
    assert done.returncode != 0, f"{case}: admitted into a restricted namespace"
    assert REFUSED in done.stderr, done.stderr


def test_the_e2e_harness_makes_its_namespaces_enforce_restricted(chart_api: ApiServer) -> None:
    """What tests/harness/release.py does before `helm install`: the release's namespace made
    and the functions' (an existing one, here `default`) labelled; then they refuse what breaks
    the profile."""
    namespaces = ("pss-harness-release", "default")
    try:
        enforce_restricted(chart_api, namespaces)
        for namespace in namespaces:
            labels = json.loads(
                chart_api.kubectl("get", "namespace", namespace, "-o", "json").stdout
            )["metadata"]["labels"]
            assert RESTRICTED_LABELS.items() <= labels.items(), labels
            root = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "root", "namespace": namespace},
                "spec": {"containers": [{"name": "c", "image": "registry.example/any:1"}]},
            }
            done = submit(chart_api, root)
            assert done.returncode != 0 and REFUSED in done.stderr, done.stderr
        enforce_restricted(chart_api, namespaces)  # again, as on a second install: no error
    finally:
        unlabel = [f"{key}-" for key in RESTRICTED_LABELS]
        chart_api.kubectl("label", "namespace", "default", *unlabel, check=False)


def test_the_harness_names_the_pods_a_controller_could_not_create(chart_api: ApiServer) -> None:
    """What a timed-out e2e wait reports: the FailedCreate events (here made by hand, as the
    ReplicaSet controller records a refusal) of the namespace, and nothing where there are none."""
    namespace = "pss-refusals"
    chart_api.kubectl("create", "namespace", namespace)
    assert refused_pods(chart_api, namespace) == ""
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": "gateway-rs.1", "namespace": namespace},
        "involvedObject": {"kind": "ReplicaSet", "name": "gateway-rs", "namespace": namespace},
        "reason": "FailedCreate",
        "message": 'Error creating: pods "gateway-rs-x" is forbidden: ' + REFUSED,
        "type": "Warning",
    }
    chart_api.kubectl("create", "-f", "-", input=json.dumps(event))
    assert REFUSED in refused_pods(chart_api, namespace)
