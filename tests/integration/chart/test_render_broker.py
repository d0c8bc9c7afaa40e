"""The chart's broker and dispatchers without a cluster: a NATS JetStream StatefulSet with its
store on a volume claim (clustered through a headless Service when asked), reachable only by the
gateway, the dispatchers and its peers; the gateway and the dispatchers given the same broker and
stream settings; the dispatchers' own access key and no API rights; an existing NATS instead, or
no broker at all."""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Sequence
from typing import Any

from harness import binaries
from integration.chart.test_render import CHART, find, render


def container(docs: Sequence[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    [only] = find(docs, kind, name)["spec"]["template"]["spec"]["containers"]
    return dict(only)


def env_of(spec: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in spec.get("env", [])}


def nats_config(docs: Sequence[dict[str, Any]]) -> tuple[str, str]:
    """nats.conf (ConfigMap) and auth.conf (Secret) as the server reads them."""
    config = find(docs, "ConfigMap", "kubelambda-nats")["data"]["nats.conf"]
    auth = base64.b64decode(find(docs, "Secret", "kubelambda-nats")["data"]["auth.conf"]).decode()
    return config, auth


def render_fails(*values: str) -> str:
    sets: list[str] = []
    for value in values:
        sets += ["--set", value]
    done = subprocess.run(
        [str(binaries.ensure_helm()), "template", "kubelambda", str(CHART), *sets],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0, f"rendered with {values}"
    return done.stderr


def test_the_broker_keeps_its_store_on_a_volume_claim() -> None:
    docs = render(
        "nats.storage.size=20Gi",
        "nats.storage.storageClassName=fast",
        "nats.image.repository=nats",
        "nats.image.tag=2.11-alpine",
    )
    nats = find(docs, "StatefulSet", "kubelambda-nats")
    assert nats["spec"]["replicas"] == 1
    assert nats["spec"]["serviceName"] == "kubelambda-nats-headless"
    [claim] = nats["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["storageClassName"] == "fast"
    assert claim["spec"]["resources"]["requests"]["storage"] == "20Gi"
    server = container(docs, "StatefulSet", "kubelambda-nats")
    assert server["image"] == "nats:2.11-alpine"
    assert server["args"] == ["--config", "/etc/nats/nats.conf"]
    mounts = {m["name"]: m["mountPath"] for m in server["volumeMounts"]}
    assert mounts == {"config": "/etc/nats", "data": "/data"}
    config, auth = nats_config(docs)
    assert "store_dir: /data\n" in config
    assert "max_file_store: 8Gi" in config
    assert "include auth.conf" in config
    assert "authorization {" in auth and "cluster" not in auth
    # Probed on the monitoring port, as JetStream reports itself.
    assert "http: 0.0.0.0:8222" in config
    assert {p["name"]: p["containerPort"] for p in server["ports"]}["monitor"] == 8222
    for probe in ("livenessProbe", "readinessProbe"):
        assert server[probe]["httpGet"] == {
            "path": "/healthz?js-enabled-only=true",
            "port": "monitor",
        }
    # Hardened like the other pods, and the volume writable by the user it runs as.
    pod = nats["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["fsGroup"] == 10001
    assert pod["automountServiceAccountToken"] is False
    assert server["securityContext"]["readOnlyRootFilesystem"] is True
    assert server["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert server["resources"]["limits"]["memory"]
    default = find(render(), "StatefulSet", "kubelambda-nats")["spec"]["volumeClaimTemplates"]
    assert "storageClassName" not in default[0]["spec"]  # the cluster's default class


def test_the_largest_message_is_the_same_for_the_server_the_stream_and_both_writers() -> None:
    docs = render("nats.maxPayload=4194304")
    config, _ = nats_config(docs)
    assert "max_payload: 4194304" in config
    for kind, name in (
        ("Deployment", "kubelambda-gateway"),
        ("Deployment", "kubelambda-dispatcher"),
    ):
        assert "--nats-max-message-bytes=4194304" in container(docs, kind, name)["args"], name
    # The default holds an event of the gateway's largest asynchronous payload (256 KiB),
    # base64-encoded, and a retry carrying a 6 MB error: 8 MiB, NATS's advised ceiling.
    assert "max_payload: 8388608" in nats_config(render())[0]


def test_the_gateway_the_dispatchers_and_the_operator_share_the_broker_and_the_stream() -> None:
    docs = render(
        "nats.stream.maxAgeSeconds=3600",
        "nats.stream.maxBytes=5368709120",
        "dispatcher.ackWaitSeconds=20",
        "dispatcher.functionConcurrency=4",
        "dispatcher.workers=8",
    )
    gateway = container(docs, "Deployment", "kubelambda-gateway")
    dispatcher = container(docs, "Deployment", "kubelambda-dispatcher")
    # The operator fires schedule Triggers into the broker.
    operator = container(docs, "Deployment", "kubelambda-operator")
    stream = [
        "--nats-replicas=1",
        "--nats-max-age=3600",
        "--nats-max-bytes=5368709120",
        "--nats-max-message-bytes=8388608",
    ]
    for spec in (gateway, dispatcher, operator):
        assert [
            a for a in spec["args"] if a.split("=")[0] in {s.split("=")[0] for s in stream}
        ] == (stream)
    shared = ("KUBELAMBDA_NATS_URL", "KUBELAMBDA_NATS_USER", "KUBELAMBDA_NATS_PASSWORD")
    gateway_env, dispatcher_env = env_of(gateway), env_of(dispatcher)
    assert gateway_env["KUBELAMBDA_NATS_URL"] == "nats://kubelambda-nats.kubelambda.svc:4222"
    assert {k: gateway_env[k] for k in shared} == {k: dispatcher_env[k] for k in shared}
    assert {k: gateway_env[k] for k in shared} == {k: env_of(operator)[k] for k in shared}
    assert gateway_env["KUBELAMBDA_NATS_PASSWORD"] == {
        "secretKeyRef": {"name": "kubelambda-nats", "key": "password", "optional": True}
    }
    assert dispatcher["args"][0] == "dispatcher"
    for flag in ("--nats-ack-wait=20", "--function-concurrency=4", "--workers=8"):
        assert flag in dispatcher["args"]
    assert dispatcher_env["KUBELAMBDA_GATEWAY_URL"] == "http://kubelambda-gateway.kubelambda.svc"
    secret = find(docs, "Secret", "kubelambda-nats")["data"]
    assert base64.b64decode(secret["user"]) == b"kubelambda"
    assert len(base64.b64decode(secret["password"])) >= 32
    password = base64.b64decode(secret["password"]).decode()
    assert f'password: "{password}"' in nats_config(docs)[1]


def test_the_dispatchers_invoke_with_a_key_of_their_own_and_no_api_rights() -> None:
    docs = render(
        "dispatcher.replicas=3", "dispatcher.metricsPort=9191", "dispatcher.eventSources=false"
    )
    deployment = find(docs, "Deployment", "kubelambda-dispatcher")
    assert deployment["spec"]["replicas"] == 3
    pod = deployment["spec"]["template"]
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == "9191"
    assert pod["spec"]["serviceAccountName"] == "kubelambda-dispatcher"
    assert pod["spec"]["automountServiceAccountToken"] is False
    assert (
        find(docs, "ServiceAccount", "kubelambda-dispatcher")["automountServiceAccountToken"]
        is False
    )
    bound = [
        d["subjects"]
        for d in docs
        if d["kind"] in ("RoleBinding", "ClusterRoleBinding")
        and any(s["name"] == "kubelambda-dispatcher" for s in d["subjects"])
    ]
    assert bound == []
    env = env_of(container(docs, "Deployment", "kubelambda-dispatcher"))
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert env[name] == {"secretKeyRef": {"name": "kubelambda-dispatcher", "key": name}}
    secret = find(docs, "Secret", "kubelambda-dispatcher")
    # The gateway takes it as any access key: labelled, in the release's namespace.
    assert secret["metadata"]["labels"]["kubelambda.dev/access-key"] == "true"
    assert secret["metadata"]["namespace"] == "kubelambda"
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data["functions"] == "*/*"
    assert data["AWS_ACCESS_KEY_ID"].startswith("AKIA") and len(data["AWS_ACCESS_KEY_ID"]) == 20
    assert len(data["AWS_SECRET_ACCESS_KEY"]) == 40
    narrow = find(render("functionNamespaces={team-a,team-b}"), "Secret", "kubelambda-dispatcher")
    assert base64.b64decode(narrow["data"]["functions"]) == b"team-a/*\nteam-b/*"


def test_dispatchers_polling_event_sources_read_specs_and_named_secrets_only() -> None:
    docs = render("functionNamespaces={team-a,team-b}")
    pod = find(docs, "Deployment", "kubelambda-dispatcher")["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is True
    args = container(docs, "Deployment", "kubelambda-dispatcher")["args"]
    assert "--event-sources" in args
    assert [a for a in args if a.startswith("--namespace=")] == [
        "--namespace=team-a",
        "--namespace=team-b",
    ]
    rules = find(docs, "ClusterRole", "kubelambda-dispatcher")["rules"]
    assert rules == [
        {
            "apiGroups": ["kubelambda.dev"],
            "resources": ["functions", "triggers"],
            "verbs": ["get", "list", "watch"],
        },
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]},
    ]
    # Bound in the functions' namespaces only, never cluster-wide.
    bindings = [
        d
        for d in docs
        if d["kind"] in ("RoleBinding", "ClusterRoleBinding")
        and d["roleRef"]["name"] == "kubelambda-dispatcher"
    ]
    assert sorted((d["kind"], d["metadata"]["namespace"]) for d in bindings) == [
        ("RoleBinding", "team-a"),
        ("RoleBinding", "team-b"),
    ]


def test_a_clustered_broker_routes_its_servers_through_a_headless_service() -> None:
    docs = render("nats.replicas=3")
    nats = find(docs, "StatefulSet", "kubelambda-nats")
    assert nats["spec"]["replicas"] == 3
    assert nats["spec"]["podManagementPolicy"] == "Parallel"
    affinity = nats["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    assert affinity["preferredDuringSchedulingIgnoredDuringExecution"]
    headless = find(docs, "Service", "kubelambda-nats-headless")["spec"]
    assert headless["clusterIP"] == "None"
    assert headless["publishNotReadyAddresses"] is True
    assert {p["name"]: p["port"] for p in headless["ports"]} == {"client": 4222, "cluster": 6222}
    config, auth = nats_config(docs)
    assert "server_name: $POD_NAME" in config
    routes = [line.strip() for line in auth.splitlines() if line.strip().startswith("nats://")]
    assert [r.split("@")[1] for r in routes] == [
        f"kubelambda-nats-{i}.kubelambda-nats-headless.kubelambda.svc:6222" for i in range(3)
    ]
    assert "--nats-replicas=3" in container(docs, "Deployment", "kubelambda-gateway")["args"]
    assert find(docs, "PodDisruptionBudget", "kubelambda-nats")["spec"]["maxUnavailable"] == 1
    assert "majority" in render_fails("nats.replicas=2")


def test_only_the_gateway_the_dispatchers_the_operator_and_its_peers_reach_the_broker() -> None:
    docs = render("nats.replicas=3")
    policy = find(docs, "NetworkPolicy", "kubelambda-nats")
    labels = {
        component: find(docs, kind, f"kubelambda-{component}")["spec"]["template"]["metadata"][
            "labels"
        ]
        for kind, component in (
            ("Deployment", "gateway"),
            ("Deployment", "dispatcher"),
            ("Deployment", "operator"),
            ("StatefulSet", "nats"),
        )
    }
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= labels["nats"].items()
    assert policy["spec"]["policyTypes"] == ["Ingress"]

    def admitted(port: str) -> set[str]:
        """The components whose pods a rule for `port` admits."""
        found = set()
        for rule in policy["spec"]["ingress"]:
            if port in [p["port"] for p in rule["ports"]]:
                for source in rule["from"]:
                    wanted = source["podSelector"]["matchLabels"].items()
                    found |= {c for c, pod in labels.items() if wanted <= pod.items()}
        return found

    assert admitted("client") == {"gateway", "dispatcher", "operator"}
    assert admitted("cluster") == {"nats"}
    assert admitted("monitor") == set()


def test_an_existing_nats_is_used_with_the_credentials_secret_named() -> None:
    docs = render(
        "nats.install=false", "nats.url=nats://nats.messaging:4222", "nats.credentialsSecret=mine"
    )
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert not {k for k in kinds if "nats" in k[1]}  # nothing of a broker of the chart's own
    assert ("Deployment", "kubelambda-dispatcher") in kinds
    for name in ("kubelambda-gateway", "kubelambda-dispatcher"):
        env = env_of(container(docs, "Deployment", name))
        assert env["KUBELAMBDA_NATS_URL"] == "nats://nats.messaging:4222"
        for key, variable in (
            ("user", "KUBELAMBDA_NATS_USER"),
            ("password", "KUBELAMBDA_NATS_PASSWORD"),
            ("token", "KUBELAMBDA_NATS_TOKEN"),
        ):
            assert env[variable] == {"secretKeyRef": {"name": "mine", "key": key, "optional": True}}
    assert "--nats-replicas=1" in container(docs, "Deployment", "kubelambda-gateway")["args"]
    both = render_fails("nats.url=nats://nats.messaging:4222")  # with nats.install left true
    assert "nats.install and nats.url exclude each other" in both


def test_without_a_broker_the_gateway_keeps_events_itself_and_no_dispatcher_runs() -> None:
    docs = render("nats.install=false")
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert not {k for k in kinds if "nats" in k[1] or "dispatcher" in k[1]}
    gateway = container(docs, "Deployment", "kubelambda-gateway")
    assert not [name for name in env_of(gateway) if name.startswith("KUBELAMBDA_NATS")]
    assert not [a for a in gateway["args"] if a.startswith("--nats")]
    operator = container(docs, "Deployment", "kubelambda-operator")
    assert not [a for a in operator["args"] if a.startswith("--nats")]
