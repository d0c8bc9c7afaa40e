"""A Function with small inline code runs in a pod without volumes (docs/contracts.md "Code in
the environment"): its files, nested ones too, are at the task root, read-only; /tmp is
writable and the image's files are not; the handler's environment carries neither the code's
variables nor the announcement key; and the pod still announces itself with its Function's key."""

from __future__ import annotations

import json
import textwrap

from e2e.kit import (
    FUNCTIONS_NAMESPACE,
    Installed,
    component_log,
    function_manifests,
    function_pods,
    http_get,
    wait_for,
    wait_function_ready,
)
from harness.cluster import Cluster

NAME = "envcode"
CODE = textwrap.dedent(
    """
    import json
    import os
    import stat

    from pkg.util import VALUE


    def attempt(path):
        try:
            with open(path, "w") as file:
                file.write("x")
        except OSError as exc:
            return type(exc).__name__
        return "written"


    def handler(event, context):
        report = {
            "nested": VALUE,
            "tmp": attempt("/tmp/scratch"),
            "task_root": attempt("/var/task/app.py"),
            "image": attempt("/usr/lib/envcode"),
            "mode": stat.S_IMODE(os.stat("/var/task/app.py").st_mode),
            "env": sorted(k for k in os.environ if k.startswith("KUBELAMBDA_")),
        }
        return {"statusCode": 200, "body": json.dumps(report)}
    """
)


def test_small_inline_code_runs_in_a_pod_without_volumes(
    e2e_cluster: Cluster, installed: Installed
) -> None:
    manifests = function_manifests(NAME, code=CODE, path=f"/{NAME}")
    manifests[0]["spec"]["code"]["inline"]["files"].update(
        {"pkg/__init__.py": "", "pkg/util.py": "VALUE = 'nested'\n"}
    )
    e2e_cluster.apply(manifests)
    wait_function_ready(e2e_cluster, NAME)

    status, _, body = http_get(f"{installed.gateway_url}/{NAME}")

    assert status == 200, body
    report = json.loads(body)
    assert report["nested"] == "nested"
    assert report["tmp"] == "written"
    assert report["task_root"] == "PermissionError", report  # read-only files, as on Lambda
    assert report["image"] == "PermissionError", report  # the image's files are root's
    assert report["mode"] == 0o444
    # The runtime took the code's variables and the key out; what it leaves (its port, the
    # announcement's URL and the pod's name) holds no secret.
    leaked = [k for k in report["env"] if k.startswith("KUBELAMBDA_CODE")]
    assert leaked == [] and "KUBELAMBDA_ANNOUNCE_KEY" not in report["env"], report["env"]
    [pod] = function_pods(e2e_cluster, NAME)
    assert "volumes" not in pod["spec"], pod["spec"].get("volumes")
    [container] = pod["spec"]["containers"]
    assert container["resources"]["limits"]["ephemeral-storage"] == "512Mi"
    announced = f"{FUNCTIONS_NAMESPACE}/{NAME}: pod {pod['metadata']['name']} announced it serves"
    wait_for(
        lambda: announced in component_log(e2e_cluster, "operator", lines=400),
        what=f"the operator to accept the announcement (its log: '{announced}')",
        timeout=10,
    )
