"""The API-server tier itself: the harness's real kube-apiserver takes the repository's CRDs and a
CRD of its own, reports the pinned version, and its controller-manager collects garbage."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import yaml

from harness.apiserver import ApiServer
from harness.binaries import KUBERNETES_VERSION
from harness.procs import wait_until
from kubelambda.platforms.kubernetes.client import KubeClient
from kubelambda.platforms.kubernetes.errors import Conflict
from kubelambda.platforms.kubernetes.kinds import CONFIG_MAP

CRDS = Path(__file__).resolve().parents[3] / "crds"

TINY_CRD = textwrap.dedent(
    """\
    apiVersion: apiextensions.k8s.io/v1
    kind: CustomResourceDefinition
    metadata:
      name: widgets.harness.kubelambda.test
    spec:
      group: harness.kubelambda.test
      scope: Namespaced
      names: {plural: widgets, singular: widget, kind: Widget}
      versions:
        - name: v1
          served: true
          storage: true
          schema:
            openAPIV3Schema:
              type: object
              properties:
                spec:
                  type: object
                  properties:
                    size: {type: integer, minimum: 1}
    """
)


def crd_names(documents: str) -> set[str]:
    return {
        doc["metadata"]["name"]
        for doc in yaml.safe_load_all(documents)
        if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition"
    }


def listed_crds(kube_api: ApiServer) -> set[str]:
    out = kube_api.kubectl("get", "crd", "-o", "jsonpath={.items[*].metadata.name}").stdout
    return set(out.split())


def test_server_reports_the_pinned_version(kube_api: ApiServer) -> None:
    version = json.loads(kube_api.kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"] == KUBERNETES_VERSION


def test_helm_and_the_python_client_reach_the_server(kube_api: ApiServer) -> None:
    # The chart is installed with this helm, and the operator reads this kubeconfig.
    assert kube_api.helm("list", "--all-namespaces", "-o", "json").stdout.strip() == "[]"

    from kubernetes import client, config  # type: ignore[import-untyped]

    api = client.CoreV1Api(config.new_client_from_config(config_file=str(kube_api.kubeconfig)))
    names = {ns.metadata.name for ns in api.list_namespace().items}
    assert {"default", "kube-system"} <= names


def test_repository_crds_apply_and_are_listed(kube_api: ApiServer) -> None:
    files = sorted(p for p in CRDS.glob("*") if p.suffix in {".yaml", ".yml", ".json"})
    if not files:
        pytest.fail(
            f"{CRDS} holds no CRD manifests (*.yaml); the Function and Trigger CRDs belong there "
            "(issue 4). This test applies them to the real API server."
        )
    expected = crd_names("\n---\n".join(p.read_text() for p in files))
    assert expected, f"no CustomResourceDefinition documents in {[p.name for p in files]}"

    kube_api.kubectl("apply", "-f", str(CRDS))
    kube_api.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", *(f"crd/{n}" for n in expected)
    )
    assert expected <= listed_crds(kube_api)


def test_a_crd_of_our_own_applies_and_serves_objects(
    kube_api: ApiServer, namespace: str, tmp_path: Path
) -> None:
    (tmp_path / "widget-crd.yaml").write_text(TINY_CRD)
    # The CRD stays: deleting a CRD stalls the garbage collector of this shared server for
    # ~30 s (its resource monitors fail to sync until the next discovery resync).
    kube_api.kubectl("apply", "-f", str(tmp_path))
    kube_api.kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/widgets.harness.kubelambda.test",
    )
    assert "widgets.harness.kubelambda.test" in listed_crds(kube_api)

    widget = {
        "apiVersion": "harness.kubelambda.test/v1",
        "kind": "Widget",
        "metadata": {"name": "w1", "namespace": namespace},
        "spec": {"size": 3},
    }
    kube_api.kubectl("apply", "-f", "-", input=json.dumps(widget))
    got = json.loads(kube_api.kubectl("get", "widget", "w1", "-n", namespace, "-o", "json").stdout)
    assert got["spec"] == {"size": 3}

    # The schema is enforced by the server, and its message names the field.
    widget["spec"] = {"size": 0}
    refused = kube_api.kubectl("apply", "-f", "-", input=json.dumps(widget), check=False)
    assert refused.returncode != 0
    assert "spec.size" in refused.stderr


def test_garbage_collector_deletes_what_an_owner_owned(kube_api: ApiServer, namespace: str) -> None:
    kube_api.kubectl("create", "configmap", "owner", "-n", namespace, "--from-literal=k=v")
    uid = kube_api.kubectl(
        "get", "configmap", "owner", "-n", namespace, "-o", "jsonpath={.metadata.uid}"
    ).stdout
    dependent = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "dependent",
            "namespace": namespace,
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid}
            ],
        },
        "data": {"k": "v"},
    }
    kube_api.kubectl("apply", "-f", "-", input=json.dumps(dependent))
    # The dependent must survive while its owner lives, or deletion below would prove nothing.
    kube_api.kubectl("get", "configmap", "dependent", "-n", namespace)

    kube_api.kubectl("delete", "configmap", "owner", "-n", namespace)

    def dependent_gone() -> bool:
        got = kube_api.kubectl("get", "configmap", "dependent", "-n", namespace, check=False)
        return got.returncode != 0 and "NotFound" in got.stderr

    wait_until(
        dependent_gone,
        what="the garbage collector deleting the owned ConfigMap",
        timeout=90,  # its informers may still be syncing right after the server started
        watch=list(kube_api.servers.values()),
    )


def test_a_delete_with_a_uid_removes_only_that_object(kube_api: ApiServer, namespace: str) -> None:
    """KubeClient.delete(uid=...): the operator deletes an object it no longer needs only if it is
    still the one it saw, never a newer one of the same name."""
    client = KubeClient.from_config(kube_api.kubeconfig)
    created = client.create(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "old", "namespace": namespace},
        }
    )
    with pytest.raises(Conflict):
        client.delete(CONFIG_MAP, namespace=namespace, name="old", uid="not-its-uid")
    assert client.get(CONFIG_MAP, namespace=namespace, name="old") is not None

    uid = created["metadata"]["uid"]
    assert client.delete(CONFIG_MAP, namespace=namespace, name="old", uid=uid) is True
    assert client.get(CONFIG_MAP, namespace=namespace, name="old") is None
    assert client.delete(CONFIG_MAP, namespace=namespace, name="old", uid=uid) is False
