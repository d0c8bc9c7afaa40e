"""Every example manifest for a cluster, applied with kubectl to a real API server: the operator
creates the objects that serve each Function and reports its status; `kubectl wait` works."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.apiserver import ApiServer
from integration.controller.operating import (
    RUNTIME_IMAGE,
    OperatorProcess,
    condition,
    get,
    wait_condition,
)
from kubelambda.api import Function, InlineCode, Trigger, load_manifests
from kubelambda.api.packages import function_zips

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
# Examples a cluster takes: the ones without spec.code.path (that one is for local mode).
CLUSTER_EXAMPLES = sorted(
    [EXAMPLES / name for name in ("orders.yaml", "uploads.yaml", "worker.yaml")]
    + list((EXAMPLES / "cluster").glob("*.yaml"))
)


def test_the_examples_are_there() -> None:
    missing = [path for path in CLUSTER_EXAMPLES if not path.is_file()]
    assert not missing, f"examples moved or gone: {missing}"
    assert len(CLUSTER_EXAMPLES) >= 6


@pytest.mark.parametrize("example", CLUSTER_EXAMPLES, ids=lambda p: str(p.relative_to(EXAMPLES)))
def test_example_is_served(
    kube_api: ApiServer, operator: OperatorProcess, namespace: str, example: Path
) -> None:
    objects = load_manifests(example)
    kube_api.kubectl("apply", "-n", namespace, "-f", str(example))

    for function in (o for o in objects if isinstance(o, Function)):
        name = function.name
        if function.scaling.min_replicas == 0:
            # What a user or a CI pipeline would run.
            kube_api.kubectl(
                "wait", "--for=condition=Ready", "--timeout=60s", "-n", namespace, f"fn/{name}"
            )
            body = wait_condition(kube_api, "fn", name, namespace, reason="ScaledToZero")
        else:
            # No nodes here: the pods it keeps warm never become ready.
            body = wait_condition(
                kube_api, "fn", name, namespace, reason="Starting", status="False"
            )
        uid = body["metadata"]["uid"]
        status = body["status"]
        assert status["observedGeneration"] == body["metadata"]["generation"]
        assert status["url"].endswith(f"/2015-03-31/functions/{namespace}.{name}/invocations")
        assert condition(body, "Progressing") is not None

        deployment = get(kube_api, "deployment", name, namespace)
        assert deployment is not None
        owner = deployment["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["uid"], owner["controller"]) == ("Function", uid, True)
        assert deployment["spec"]["replicas"] == function.scaling.min_replicas
        template = deployment["spec"]["template"]
        assert template["metadata"]["annotations"]["kubelambda.dev/code-hash"] == status["codeHash"]
        [container] = template["spec"]["containers"]
        assert container["image"] == RUNTIME_IMAGE
        assert (
            container["resources"]["limits"]["memory"]
            == container["resources"]["requests"]["memory"]
        )
        assert template["spec"]["securityContext"]["runAsNonRoot"] is True

        service = get(kube_api, "service", name, namespace)
        assert service is not None and service["spec"]["clusterIP"] == "None"
        assert get(kube_api, "networkpolicy", "kubelambda-functions", namespace) is not None
        # A policy of its own only for the destinations it declares.
        own = get(kube_api, "networkpolicy", name, namespace)
        assert (own is not None) == bool(function.egress), name
        code = get(kube_api, "configmap", f"{name}-code", namespace)
        env = {var["name"] for var in container.get("env", ())}
        if not isinstance(function.code, InlineCode):
            assert code is None
        elif function.image is None and not function_zips(function):
            # Small inline code on a runtime image rides in the environment: no ConfigMap.
            assert code is None and "KUBELAMBDA_CODE_0" in env, name
        else:
            assert code is not None
            assert code["metadata"]["ownerReferences"][0]["uid"] == uid

    for trigger in (o for o in objects if isinstance(o, Trigger)):
        body = wait_condition(
            kube_api, "trigger", trigger.name, namespace, reason="Published", status="True"
        )
        assert body["status"]["source"]


def test_the_local_mode_example_is_refused_naming_its_field(
    kube_api: ApiServer, crds: None, namespace: str
) -> None:
    refused = kube_api.kubectl(
        "apply", "-n", namespace, "-f", str(EXAMPLES / "hello.yaml"), check=False
    )
    assert refused.returncode != 0
    assert "spec.code.path" in refused.stderr
    assert "kubelambda local" in refused.stderr
