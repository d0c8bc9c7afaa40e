"""The chart without a cluster: its CRDs are the repository's, `helm lint` is clean, and what
`helm template` renders is hardened, least-privilege and wired to the values."""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness import binaries

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "charts" / "kubelambda"


def helm(*args: str) -> str:
    done = subprocess.run(
        [str(binaries.ensure_helm()), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"helm {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def render(*values: str) -> list[dict[str, Any]]:
    sets: list[str] = []
    for value in values:
        sets += ["--set", value]
    out = helm("template", "kubelambda", str(CHART), "--namespace", "kubelambda", *sets)
    return [doc for doc in yaml.safe_load_all(out) if doc]


def find(docs: Sequence[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    for doc in docs:
        if doc["kind"] == kind and doc["metadata"]["name"] == name:
            return doc
    raise AssertionError(
        f"no {kind} {name} in {[(d['kind'], d['metadata']['name']) for d in docs]}"
    )


def test_chart_crds_are_the_repositorys_byte_for_byte() -> None:
    ours = {p.name: p.read_bytes() for p in (ROOT / "crds").glob("*.yaml")}
    charts = {p.name: p.read_bytes() for p in (CHART / "crds").glob("*.yaml")}
    assert ours, "crds/ is empty"
    assert charts == ours, (
        "charts/kubelambda/crds/ differs from crds/: cp crds/*.yaml charts/kubelambda/crds/"
    )


def test_lint_is_clean() -> None:
    out = helm("lint", "--strict", str(CHART))
    assert "0 chart(s) failed" in out
    assert "[WARNING]" not in out and "[ERROR]" not in out


def test_renders_the_components() -> None:
    kinds = {(doc["kind"], doc["metadata"]["name"]) for doc in render()}
    assert kinds >= {
        ("ServiceAccount", "kubelambda-operator"),
        ("ServiceAccount", "kubelambda-gateway"),
        ("ClusterRole", "kubelambda-operator"),
        ("ClusterRole", "kubelambda-gateway"),
        ("ClusterRoleBinding", "kubelambda-operator"),
        ("ClusterRoleBinding", "kubelambda-gateway"),
        ("Role", "kubelambda-operator-leases"),
        ("Deployment", "kubelambda-operator"),
        ("Deployment", "kubelambda-gateway"),
        ("Service", "kubelambda-operator"),
        ("Service", "kubelambda-gateway"),
        ("Service", "kubelambda-gateway-admin"),
        ("Secret", "kubelambda-gateway"),
        # The broker and its dispatchers (nats.install defaults to true).
        ("StatefulSet", "kubelambda-nats"),
        ("Service", "kubelambda-nats"),
        ("Service", "kubelambda-nats-headless"),
        ("ConfigMap", "kubelambda-nats"),
        ("Secret", "kubelambda-nats"),
        ("NetworkPolicy", "kubelambda-nats"),
        ("Deployment", "kubelambda-dispatcher"),
        ("ServiceAccount", "kubelambda-dispatcher"),
        ("Secret", "kubelambda-dispatcher"),
    }


@pytest.mark.parametrize(
    "name", ["kubelambda-operator", "kubelambda-gateway", "kubelambda-dispatcher"]
)
def test_components_run_hardened_from_the_configured_image(name: str) -> None:
    docs = render("image.repository=registry.example/kl", "image.tag=1.2.3")
    pod = find(docs, "Deployment", name)["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    [container] = pod["containers"]
    assert container["image"] == "registry.example/kl:1.2.3"
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["resources"]["limits"]["memory"]


def test_metrics_scrapers_are_named_by_namespace() -> None:
    docs = render("runtime.metricsFrom={monitoring,ops}")
    args = find(docs, "Deployment", "kubelambda-operator")["spec"]["template"]["spec"]
    assert "--metrics-from=monitoring,ops" in args["containers"][0]["args"]


def test_the_operator_takes_extra_flags() -> None:
    operator = find(
        render("operator.extraArgs={--schedule-speed=2}"), "Deployment", "kubelambda-operator"
    )
    assert "--schedule-speed=2" in operator["spec"]["template"]["spec"]["containers"][0]["args"]


def test_function_egress_is_restricted_to_the_gateways_port_unless_opened() -> None:
    operator = find(render("gateway.port=8181"), "Deployment", "kubelambda-operator")
    args = operator["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--function-egress=restricted" in args
    assert "--gateway-port=8181" in args
    opened = find(render("runtime.egress=open"), "Deployment", "kubelambda-operator")
    assert "--function-egress=open" in opened["spec"]["template"]["spec"]["containers"][0]["args"]


def test_the_operator_is_told_the_runtime_images_and_where_the_gateway_is() -> None:
    docs = render("runtime.images.python3\\.13=localhost/rt313:9", "region=eu-west-1")
    operator = find(docs, "Deployment", "kubelambda-operator")
    assert operator["spec"]["replicas"] == 1
    assert operator["spec"]["strategy"] == {"type": "Recreate"}
    args = operator["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[0] == "operator"
    assert "--runtime-image=python3.12=localhost/kubelambda-runtime:0.1.0" in args
    assert "--runtime-image=python3.13=localhost/rt313:9" in args
    assert "--gateway-url=http://kubelambda-gateway.kubelambda.svc" in args
    assert "--gateway-namespace=kubelambda" in args
    assert "--region=eu-west-1" in args
    assert "--metrics-from=*" in args
    selector = next(a for a in args if a.startswith("--gateway-selector="))
    gateway = find(docs, "Deployment", "kubelambda-gateway")
    labels = gateway["spec"]["template"]["metadata"]["labels"]
    wanted = dict(
        pair.split("=") for pair in selector.removeprefix("--gateway-selector=").split(",")
    )
    assert wanted.items() <= labels.items(), "function NetworkPolicies would shut the gateway out"
    env = {
        e["name"]: e.get("value")
        for e in operator["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["KUBELAMBDA_PROMETHEUS_URL"] == "http://prometheus-server.monitoring.svc:9090"


def test_gateway_replicas_resources_and_ports_follow_the_values() -> None:
    docs = render(
        "gateway.replicas=3", "gateway.resources.limits.memory=1Gi", "gateway.service.port=8000"
    )
    gateway = find(docs, "Deployment", "kubelambda-gateway")
    assert gateway["spec"]["replicas"] == 3
    container = gateway["spec"]["template"]["spec"]["containers"][0]
    # Each replica enforces a third of a function's limits.
    assert {"name": "KUBELAMBDA_GATEWAY_REPLICAS", "value": "3"} in container["env"]
    assert container["args"][0] == "gateway"
    assert container["resources"]["limits"]["memory"] == "1Gi"
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {
        "http": 8080,
        "admin": 9090,
    }
    public = find(docs, "Service", "kubelambda-gateway")["spec"]["ports"]
    assert public == [{"name": "http", "port": 8000, "targetPort": "http"}]
    admin = find(docs, "Service", "kubelambda-gateway-admin")["spec"]["ports"]
    assert admin == [{"name": "admin", "port": 9090, "targetPort": "admin"}]
    operator_args = find(docs, "Deployment", "kubelambda-operator")["spec"]["template"]["spec"][
        "containers"
    ][0]["args"]
    assert "--gateway-url=http://kubelambda-gateway.kubelambda.svc:8000" in operator_args


@pytest.mark.parametrize(
    ("values", "drain", "grace"), [((), "5", 30), (("gateway.drainSeconds=12",), "12", 37)]
)
def test_a_gateway_pod_drains_within_its_termination_grace_period(
    values: tuple[str, ...], drain: str, grace: int
) -> None:
    pod = find(render(*values), "Deployment", "kubelambda-gateway")["spec"]["template"]["spec"]
    assert f"--drain-seconds={drain}" in pod["containers"][0]["args"]
    assert pod["terminationGracePeriodSeconds"] == grace


def test_the_gateway_reads_secrets_only_when_asked() -> None:
    def secret_rules(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        role = find(docs, "ClusterRole", "kubelambda-gateway")
        return [rule for rule in role["rules"] if "secrets" in rule["resources"]]

    def gateway_args(docs: list[dict[str, Any]]) -> list[str]:
        deployment = find(docs, "Deployment", "kubelambda-gateway")
        return list(deployment["spec"]["template"]["spec"]["containers"][0]["args"])

    assert secret_rules(render()) == []
    assert "--api-key-secrets" not in gateway_args(render())
    asked = render("gateway.readApiKeySecrets=true")
    # By name only: the gateway cannot enumerate Secrets.
    assert secret_rules(asked) == [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]
    assert "--api-key-secrets" in gateway_args(asked)


def test_a_token_secret_of_ones_own_replaces_the_generated_one() -> None:
    docs = render("gateway.s3TokenSecret=my-token")
    secrets = [d["metadata"]["name"] for d in docs if d["kind"] == "Secret"]
    assert "kubelambda-gateway" not in secrets  # no S3 token Secret of the chart's own
    assert "kubelambda-wake" in secrets
    gateway = find(docs, "Deployment", "kubelambda-gateway")
    [token] = [
        e
        for e in gateway["spec"]["template"]["spec"]["containers"][0]["env"]
        if e["name"] == "KUBELAMBDA_S3_TOKEN"
    ]
    assert token["valueFrom"]["secretKeyRef"] == {"name": "my-token", "key": "s3-token"}


@pytest.mark.parametrize(
    "values",
    [
        (),
        (
            "prometheus.url=http://prometheus:9090",
            "gateway.readApiKeySecrets=true",
            "nats.replicas=3",
        ),
        ("nats.install=false", "nats.url=nats://nats.example:4222"),
    ],
    ids=["defaults", "everything-on", "existing-nats"],
)
def test_no_two_objects_share_a_kind_namespace_and_name(values: tuple[str, ...]) -> None:
    # Two would replace each other, and which one survives depends on how they are applied
    # (two Services named <release>-operator once cost every cold start its wake-up).
    keys = [
        (d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]) for d in render(*values)
    ]
    assert sorted({key for key in keys if keys.count(key) > 1}) == []


def test_the_operator_service_serves_wake_ups_announcements_health_and_metrics() -> None:
    service = find(render(), "Service", "kubelambda-operator")
    ports = {port["name"]: (port["port"], port["targetPort"]) for port in service["spec"]["ports"]}
    assert ports == {
        "wake": (8082, "wake"),
        "announce": (8083, "announce"),
        "health": (8081, "health"),
        "metrics": (9090, "metrics"),
    }


def test_wake_ups_carry_a_token_the_gateway_and_the_autoscaler_share() -> None:
    docs = render()
    secret = find(docs, "Secret", "kubelambda-wake")
    assert len(base64.b64decode(secret["data"]["token"])) >= 32
    for component in ("operator", "gateway"):
        deployment = find(docs, "Deployment", f"kubelambda-{component}")
        env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["KUBELAMBDA_WAKE_TOKEN"]["valueFrom"] == {
            "secretKeyRef": {"name": "kubelambda-wake", "key": "token"}
        }, component


@pytest.mark.parametrize(
    ("values", "announce"), [((), True), (("operator.announce=false",), False)]
)
def test_only_the_gateway_may_ask_for_wake_ups_and_any_address_may_announce(
    values: tuple[str, ...], announce: bool
) -> None:
    docs = render(*values)
    policy = find(docs, "NetworkPolicy", "kubelambda-operator")
    operator = find(docs, "Deployment", "kubelambda-operator")
    gateway = find(docs, "Deployment", "kubelambda-gateway")
    pod_labels = operator["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    wake, health, *announcing = policy["spec"]["ingress"]
    [source] = wake["from"]
    gateway_labels = gateway["spec"]["template"]["metadata"]["labels"]
    assert source["podSelector"]["matchLabels"].items() <= gateway_labels.items()
    assert not source["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert [p["port"] for p in wake["ports"]] == ["wake"]
    # Probes and scrapers reach the health and metrics ports; only the gateway wakes.
    assert "from" not in health
    assert [p["port"] for p in health["ports"]] == ["health", "metrics"]
    # A starting pod announces itself before a policy engine can know its address: any
    # address reaches the announcement port, where the pod's own token authenticates it.
    assert announcing == (
        [{"ports": [{"port": "announce", "protocol": "TCP"}]}] if announce else []
    )
    ports = {p["name"] for p in operator["spec"]["template"]["spec"]["containers"][0]["ports"]}
    assert {"wake", "health", "metrics"} <= ports


def announce_rights(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """The operator's rules on pods, Secrets and TokenReviews, by ClusterRole, and how the roles
    that hold any are bound."""
    roles = {
        doc["metadata"]["name"]: [
            rule
            for rule in doc["rules"]
            if {"pods", "secrets", "tokenreviews"} & set(rule["resources"])
        ]
        for doc in docs
        if doc["kind"] == "ClusterRole"
        and doc["metadata"]["name"].startswith("kubelambda-operator")
    }
    rules = {name: rules for name, rules in roles.items() if rules}
    bindings = [
        (doc["kind"], doc["metadata"].get("namespace"), doc["roleRef"]["name"], doc["subjects"])
        for doc in docs
        if doc["kind"] in ("RoleBinding", "ClusterRoleBinding") and doc["roleRef"]["name"] in rules
    ]
    return {"rules": rules, "bound": bindings}


OPERATOR_SA = [{"kind": "ServiceAccount", "name": "kubelambda-operator", "namespace": "kubelambda"}]
READ_A_POD = {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}
READ_A_SECRET = {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}
# A Function's announce Secret: created once, read when its pods announce themselves.
READ_AND_CREATE_SECRETS = {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "create"]}


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (
            (),
            {
                "rules": {"kubelambda-operator": [READ_AND_CREATE_SECRETS, READ_A_POD]},
                "bound": [("ClusterRoleBinding", None, "kubelambda-operator", OPERATOR_SA)],
            },
        ),
        # Serving named namespaces, it creates and reads Secrets and reads pods there only: no
        # cluster-wide right (as the TokenReviews were) is left.
        (
            ("functionNamespaces={team-a}",),
            {
                "rules": {"kubelambda-operator": [READ_AND_CREATE_SECRETS, READ_A_POD]},
                "bound": [("RoleBinding", "team-a", "kubelambda-operator", OPERATOR_SA)],
            },
        ),
        # Off: it reads the Secrets Triggers name, and nothing else of these.
        (
            ("operator.announce=false",),
            {
                "rules": {"kubelambda-operator": [READ_A_SECRET]},
                "bound": [("ClusterRoleBinding", None, "kubelambda-operator", OPERATOR_SA)],
            },
        ),
    ],
    ids=["defaults", "named-namespaces", "off"],
)
def test_the_operator_may_verify_announcements_only_when_asked(
    values: tuple[str, ...], expected: dict[str, Any]
) -> None:
    assert announce_rights(render(*values)) == expected


@pytest.mark.parametrize(
    ("values", "url"),
    [
        ((), "http://kubelambda-operator.kubelambda.svc:8083"),
        (("operator.announcePort=9999",), "http://kubelambda-operator.kubelambda.svc:9999"),
        (("operator.announce=false",), None),
    ],
)
def test_the_operator_tells_function_pods_where_to_announce_themselves(
    values: tuple[str, ...], url: str | None
) -> None:
    docs = render(*values)
    operator = find(docs, "Deployment", "kubelambda-operator")
    env = {
        e["name"]: e.get("value")
        for e in operator["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env.get("KUBELAMBDA_ANNOUNCE_URL") == url
    if url is not None:
        # The operator's Service serves that port, by the name the NetworkPolicy admits.
        service = find(docs, "Service", "kubelambda-operator")
        ports = {p["targetPort"]: p["port"] for p in service["spec"]["ports"]}
        assert url.endswith(f".svc:{ports['announce']}")
        container = operator["spec"]["template"]["spec"]["containers"][0]
        assert {"name": "announce", "containerPort": ports["announce"]} in container["ports"]
        assert f"--announce-port={ports['announce']}" in container["args"]


def test_the_gateway_exports_spans_only_when_an_otlp_endpoint_is_set() -> None:
    def otel_env(docs: list[dict[str, Any]]) -> dict[str, str]:
        deployment = find(docs, "Deployment", "kubelambda-gateway")
        env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        return {e["name"]: e["value"] for e in env if e["name"].startswith("OTEL_")}

    assert otel_env(render()) == {}
    assert otel_env(
        render(
            "tracing.otlpEndpoint=http://collector.observability:4318",
            "tracing.sampler=parentbased_traceidratio",
            "tracing.samplerArg=0.1",
        )
    ) == {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector.observability:4318",
        "OTEL_SERVICE_NAME": "kubelambda-gateway",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.1",
    }
