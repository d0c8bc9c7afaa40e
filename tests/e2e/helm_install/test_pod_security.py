"""Pod Security `restricted` on the real cluster: the release's namespace and the functions'
enforce it (tests/harness/release.py labels them before `helm install`), the release's pods run
there, and a pod that breaks the profile is refused. Every Function scenario's pods are admitted
into the functions' namespace the same way, or that scenario fails."""

from __future__ import annotations

import json

from e2e.kit import FUNCTIONS_NAMESPACE, Installed, fail_on_crash
from harness.cluster import Cluster
from harness.release import COMPONENTS, RESTRICTED_LABELS, SELECTOR


def test_the_release_runs_where_restricted_is_enforced(
    e2e_cluster: Cluster, installed: Installed
) -> None:
    fail_on_crash(e2e_cluster)
    pods = e2e_cluster.ready_pods(installed.namespace, SELECTOR)
    components = {pod["metadata"]["labels"].get("app.kubernetes.io/component") for pod in pods}
    assert set(COMPONENTS) <= components, components
    for namespace in (installed.namespace, FUNCTIONS_NAMESPACE):
        labels = e2e_cluster.get("namespace", namespace)["metadata"].get("labels", {})
        assert RESTRICTED_LABELS.items() <= labels.items(), (namespace, labels)
        # A pod with no security context at all: may run as root, no seccomp profile.
        bare = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "pod-security-probe", "namespace": namespace},
            "spec": {"containers": [{"name": "probe", "image": "localhost/none:0"}]},
        }
        done = e2e_cluster.kubectl(
            "create", "--dry-run=server", "-f", "-", input=json.dumps(bare), check=False
        )
        assert done.returncode != 0, f"a non-compliant pod was admitted into {namespace}"
        assert 'violates PodSecurity "restricted:latest"' in done.stderr, done.stderr
