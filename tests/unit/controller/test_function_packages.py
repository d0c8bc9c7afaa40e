"""FunctionReconciler with spec.code.s3 and spec.layers, on FakeCluster and FakePackages: zips
are pinned once per Function generation (a replaced object rolls nothing until the Function
changes), and every refusal is a condition on the Function before any pod starts."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from typing import Any

import pytest

from kubelambda.api.fetchplan import FetchPlan
from kubelambda.api.labels import CODE_HASH_ANNOTATION
from kubelambda.api.packages import FakePackages
from kubelambda.api.unpack import UNZIPPED_LIMIT
from kubelambda.controller.cluster import FakeCluster
from kubelambda.controller.config import ControllerConfig
from kubelambda.controller.functions import RECHECK_SECONDS
from kubelambda.controller.operator import Operator
from kubelambda.controller.resources.packages import FETCH_CONTAINER
from kubelambda.platforms.kubernetes.kinds import DEPLOYMENT, FUNCTION
from support.zips import declaring, make_zip, symlink
from unit.controller.reconciling import make_operator, settle

MakeFunction = Callable[..., dict[str, Any]]
NS = "team-a"
FETCH_IMAGE = "localhost/kubelambda:0.1.0"
APP = make_zip(
    {"app.py": "import six\ndef handler(e, c):\n    return six.PY3\n", "six.py": "PY3 = 1"}
)
LAYER = make_zip({"python/deps.py": "X = 1\n"})
S3_CODE = {
    "s3": {
        "endpoint": "http://minio.storage:9000",
        "bucket": "code",
        "key": "app.zip",
        "credentialsSecret": {"name": "minio"},
    }
}
LAYERS = [{"s3": {"endpoint": "http://minio.storage:9000", "bucket": "layers", "key": "deps.zip"}}]


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def secret(name: str = "minio", **data: str) -> dict[str, Any]:
    values = data or {"AWS_ACCESS_KEY_ID": "key", "AWS_SECRET_ACCESS_KEY": "secret"}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": NS},
        "data": {key: b64(value) for key, value in values.items()},
    }


def start(
    config: ControllerConfig,
    function: dict[str, Any],
    store: FakePackages,
    *objects: dict[str, Any],
) -> tuple[FakeCluster, Operator]:
    cluster = FakeCluster()
    for obj in objects:
        cluster.put(obj)
    cluster, operator = make_operator(config, function, cluster=cluster)
    operator.functions.packages = store
    operator.functions.fetch_image = FETCH_IMAGE
    return cluster, operator


def ready(cluster: FakeCluster) -> dict[str, Any]:
    body = cluster.stored(FUNCTION, namespace=NS, name="hello")
    assert body is not None
    return next(c for c in body["status"]["conditions"] if c["type"] == "Ready")


def plan_of(cluster: FakeCluster) -> FetchPlan:
    deployment = cluster.stored(DEPLOYMENT, namespace=NS, name="hello")
    assert deployment is not None, "no Deployment"
    [init] = deployment["spec"]["template"]["spec"]["initContainers"]
    assert init["name"] == FETCH_CONTAINER and init["image"] == FETCH_IMAGE
    return FetchPlan.from_json(init["args"][init["args"].index("--plan") + 1])


def edit(operator: Operator, cluster: FakeCluster, **spec: Any) -> None:
    """Change the Function's spec as kubectl apply would: a new generation."""
    body = cluster.stored(FUNCTION, namespace=NS, name="hello")
    assert body is not None
    body["spec"].update(spec)
    body["metadata"]["generation"] += 1
    operator.function_event("MODIFIED", cluster.put(body))


def test_a_package_and_a_layer_are_pinned_in_the_pods(
    make_function: MakeFunction, config: ControllerConfig
) -> None:
    store = FakePackages()
    app_sha = store.put("code", "app.zip", APP, version="v7")
    layer_sha = store.put("layers", "deps.zip", LAYER)
    cluster, operator = start(config, make_function(code=S3_CODE, layers=LAYERS), store, secret())

    settle(operator)

    plan = plan_of(cluster)
    assert [(z.target, z.bucket, z.key, z.sha256, z.version_id) for z in plan.zips] == [
        ("task", "code", "app.zip", app_sha, "v7"),
        ("opt", "layers", "deps.zip", layer_sha, None),
    ]
    assert plan.secrets == ("minio",) and plan.zips[1].credentials is None
    body = cluster.stored(FUNCTION, namespace=NS, name="hello")
    assert body is not None
    # status.codeHash is the package's SHA-256 (Lambda's CodeSha256, in hex), as the pods run it.
    assert body["status"]["codeHash"] == f"sha256:{app_sha}"
    assert (
        base64.b64encode(bytes.fromhex(app_sha)).decode()
        == base64.b64encode(hashlib.sha256(APP).digest()).decode()
    )
    deployment = cluster.stored(DEPLOYMENT, namespace=NS, name="hello")
    assert deployment is not None
    template = deployment["spec"]["template"]["metadata"]["annotations"]
    assert template[CODE_HASH_ANNOTATION] == f"sha256:{app_sha}"
    assert ready(cluster)["status"] == "True"


def test_a_replaced_object_rolls_nothing_until_the_function_changes(
    make_function: MakeFunction, config: ControllerConfig
) -> None:
    store = FakePackages()
    first = store.put("code", "app.zip", APP)
    cluster, operator = start(config, make_function(code=S3_CODE), store, secret())
    settle(operator)
    resolves = [call for call in store.calls if call[0] == "resolve"]

    second = store.put(
        "code", "app.zip", make_zip({"app.py": "def handler(e, c):\n    return 2\n"})
    )
    writes = len(cluster.writes)
    operator.resync()
    settle(operator)

    assert [call for call in store.calls if call[0] == "resolve"] == resolves  # not read again
    assert cluster.writes[writes:] == []
    assert plan_of(cluster).zips[0].sha256 == first

    edit(operator, cluster, memoryMB=256)
    settle(operator)

    assert plan_of(cluster).zips[0].sha256 == second


def test_a_pinned_sha256_that_differs_is_refused(
    make_function: MakeFunction, config: ControllerConfig
) -> None:
    store = FakePackages()
    store.put("code", "app.zip", APP)
    pinned = {"s3": {**S3_CODE["s3"], "sha256": "0" * 64}}
    cluster, operator = start(config, make_function(code=pinned), store, secret())

    settle(operator)

    condition = ready(cluster)
    assert (condition["status"], condition["reason"]) == ("False", "PackageChecksumMismatch")
    assert f"not {'0' * 64}" in condition["message"]
    assert cluster.stored(DEPLOYMENT, namespace=NS, name="hello") is None


REFUSED_ZIPS = [
    (make_zip({"../escape.py": "x"}), "PackageUnsafePath", "'../escape.py' climbs out"),
    (make_zip([(symlink("app.py"), "/etc/passwd")]), "PackageSymlink", "'app.py' is a symbolic"),
    (b"not a zip at all", "PackageNotZip", "is not a zip file"),
    (declaring(UNZIPPED_LIMIT + 1), "PackageTooLarge", "250 MB unzipped limit"),
]


@pytest.mark.parametrize(
    ("data", "reason", "phrase"),
    REFUSED_ZIPS,
    ids=["zip slip", "symlink", "not a zip", "too large"],
)
def test_an_unsafe_package_is_a_condition_not_a_pod(
    data: bytes, reason: str, phrase: str, make_function: MakeFunction, config: ControllerConfig
) -> None:
    store = FakePackages()
    store.put("code", "app.zip", data)
    cluster, operator = start(config, make_function(code=S3_CODE), store, secret())

    settle(operator)

    condition = ready(cluster)
    assert (condition["status"], condition["reason"]) == ("False", reason)
    assert condition["message"].startswith("spec.code.s3 (s3://code/app.zip): ")
    assert phrase in condition["message"]
    assert cluster.stored(DEPLOYMENT, namespace=NS, name="hello") is None
    assert [(e.type, e.reason) for e in cluster.events] == [("Warning", reason)]


def test_the_package_and_layers_share_250_mb(
    make_function: MakeFunction, config: ControllerConfig
) -> None:
    store = FakePackages()
    store.put("code", "app.zip", declaring(UNZIPPED_LIMIT // 2 + 1))
    store.put("layers", "deps.zip", declaring(UNZIPPED_LIMIT // 2 + 1))
    cluster, operator = start(config, make_function(code=S3_CODE, layers=LAYERS), store, secret())

    settle(operator)

    condition = ready(cluster)
    assert condition["reason"] == "PackageTooLarge"
    assert f"declare {UNZIPPED_LIMIT + 2} bytes unpacked together" in condition["message"]


FAILURES = [
    ("missing object", None, "PackageNotFound", True),
    ("denied", "deny", "PackageAccessDenied", False),
    ("no Secret", "no-secret", "CredentialsNotFound", True),
    ("Secret without keys", "bad-secret", "CredentialsInvalid", True),
]


@pytest.mark.parametrize(
    ("case", "how", "reason", "recheck"), FAILURES, ids=[f[0] for f in FAILURES]
)
def test_what_cannot_be_read_is_reported_and_looked_at_again_if_it_may_come(
    case: str,
    how: str | None,
    reason: str,
    recheck: bool,
    make_function: MakeFunction,
    config: ControllerConfig,
) -> None:
    store = FakePackages()
    if how is not None:  # None: the object is never uploaded
        store.put("code", "app.zip", APP)
    if how == "deny":
        store.denied.add(("code", "app.zip"))
    objects = {
        "no-secret": [],
        "bad-secret": [secret(AWS_ACCESS_KEY_ID="only-the-id")],
    }.get(how or "", [secret()])
    cluster, operator = start(config, make_function(code=S3_CODE), store, *objects)

    results = settle(operator)

    condition = ready(cluster)
    assert (condition["status"], condition["reason"]) == ("False", reason), case
    assert results[("Function", NS, "hello")].requeue_after == (
        RECHECK_SECONDS if recheck else None
    )


def test_without_a_fetch_image_the_operator_says_what_is_missing(
    make_function: MakeFunction, config: ControllerConfig
) -> None:
    store = FakePackages()
    store.put("code", "app.zip", APP)
    cluster, operator = start(config, make_function(code=S3_CODE), store, secret())
    operator.functions.fetch_image = None

    settle(operator)

    condition = ready(cluster)
    assert condition["reason"] == "FetchImageUnset" and "--fetch-image" in condition["message"]
    assert store.calls == []


def test_a_refused_new_package_leaves_the_running_pods_alone(
    make_function: MakeFunction, config: ControllerConfig
) -> None:
    store = FakePackages()
    good = store.put("code", "app.zip", APP)
    cluster, operator = start(config, make_function(code=S3_CODE), store, secret())
    settle(operator)

    store.put("code", "app.zip", make_zip({"/etc/cron.d/x": "boom"}))
    edit(operator, cluster, memoryMB=256)
    settle(operator)

    assert ready(cluster)["reason"] == "PackageUnsafePath"
    assert plan_of(cluster).zips[0].sha256 == good  # the last good package keeps running
