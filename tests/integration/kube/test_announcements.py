"""PodAnnouncements against the harness's real API server: the key in a Function's announce
Secret (`<function>-announce`, as the controller creates it) is accepted for a pod of that
Function from its own address, and every other key, Secret, pod or address is refused with its
status.

No kubelet runs here, so the pods stay Pending without an address: the announced one is a
made-up pod address, as the runtime would read it from its downward API.
"""

from __future__ import annotations

import asyncio
import secrets
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from harness.apiserver import ApiServer
from harness.procs import wait_until
from kubelambda.api.identity import FunctionKey
from kubelambda.api.labels import ANNOUNCE_KEY, announce_secret_name
from kubelambda.autoscaler.arrivals import AnnouncementRefused
from kubelambda.platforms.kubernetes.announcements import PodAnnouncements
from kubelambda.platforms.kubernetes.client import JSON, KubeClient
from kubelambda.platforms.kubernetes.kinds import POD

IP = "10.244.0.7"
FUNCTION_LABEL = "kubelambda.dev/function"


class Cluster:
    """A namespace of the shared API server, a client and the verifier, its blocking calls on a
    small pool as the operator's autoscaler runs them."""

    def __init__(self, api: ApiServer, namespace: str) -> None:
        self.api = api
        self.namespace = namespace
        self.client = KubeClient.from_config(api.kubeconfig)
        self.pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="announce")
        self.durations: dict[str, list[float]] = {}
        self.announcements = PodAnnouncements(self.client, run=self.run)

    async def run(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        def timed() -> Any:
            started = time.perf_counter()
            try:
                return call(*args, **kwargs)
            finally:
                took = time.perf_counter() - started
                self.durations.setdefault(f"{call.__name__} {args[0]}", []).append(took)

        return await asyncio.get_running_loop().run_in_executor(self.pool, timed)

    def announce_secret(self, function: str, *, data: dict[str, str] | None = None) -> str:
        """Function `function`'s announce Secret, with a fresh key (as the controller makes it)
        at `key` unless `data` says otherwise; returns the key."""
        key = secrets.token_urlsafe(32)
        self.client.create(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": announce_secret_name(function), "namespace": self.namespace},
                "type": "Opaque",
                # The API server stores it base64-encoded under data, as the verifier reads it.
                "stringData": {ANNOUNCE_KEY: key} if data is None else data,
            }
        )
        return key

    def pod(self, name: str, *, labels: dict[str, str], finalizers: tuple[str, ...] = ()) -> JSON:
        return self.client.create(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": name,
                    "namespace": self.namespace,
                    "labels": labels,
                    "finalizers": list(finalizers),
                },
                "spec": {
                    "automountServiceAccountToken": False,
                    "containers": [{"name": "runtime", "image": "localhost/none:0"}],
                },
            }
        )

    def verify(self, key: str, pod: str, *, function: str = "hello", source_ip: str = IP) -> None:
        asyncio.run(
            self.announcements.verify(
                token=key,
                function=FunctionKey(self.namespace, function),
                pod=pod,
                ip=IP,
                source_ip=source_ip,
            )
        )

    def refusal(self, key: str, pod: str, **kwargs: Any) -> AnnouncementRefused:
        with pytest.raises(AnnouncementRefused) as refused:
            self.verify(key, pod, **kwargs)
        assert key not in str(refused.value)
        return refused.value


@pytest.fixture(scope="module")
def cluster(kube_api: ApiServer) -> Iterator[Cluster]:
    namespace = f"announce-{uuid.uuid4().hex[:8]}"
    kube_api.kubectl("create", "namespace", namespace)
    # The controller-manager's serviceaccount controller creates `default`; the API server
    # admits no pod before it exists.
    wait_until(
        lambda: (
            kube_api.kubectl(
                "get", "serviceaccount", "default", "-n", namespace, check=False
            ).returncode
            == 0
        ),
        what=f"the default ServiceAccount of {namespace} (the controller-manager creates it)",
        timeout=60.0,
    )
    cluster = Cluster(kube_api, namespace)
    yield cluster
    cluster.pool.shutdown(wait=True)
    cluster.client.close()
    kube_api.kubectl("delete", "namespace", namespace, "--wait=false")


@pytest.fixture(scope="module")
def hello_key(cluster: Cluster) -> str:
    return cluster.announce_secret("hello")


def test_a_pod_of_the_function_with_its_key_announces_it(cluster: Cluster, hello_key: str) -> None:
    cluster.pod("hello-1", labels={FUNCTION_LABEL: "hello"})
    cluster.durations = {}
    took = []
    for _ in range(7):
        started = time.perf_counter()
        cluster.verify(hello_key, "hello-1")
        took.append(time.perf_counter() - started)
    # The IPv4-mapped form of the address the connection came from is the same address.
    cluster.verify(hello_key, "hello-1", source_ip=f"::ffff:{IP}")
    calls = ", ".join(
        f"{call} {statistics.median(durations) * 1e3:.1f} ms"
        for call, durations in sorted(cluster.durations.items())
    )
    assert sorted(cluster.durations) == ["get pods", "get secrets"]
    print(
        f"\nannouncement verified in {statistics.median(took) * 1e3:.1f} ms (median of "
        f"{len(took)}): {calls}, concurrently"
    )


def test_refusals(cluster: Cluster, hello_key: str) -> None:
    cluster.pod("hello-2", labels={FUNCTION_LABEL: "hello"})
    cluster.pod("plain", labels={})
    cluster.pod("bye-1", labels={FUNCTION_LABEL: "bye"})
    cluster.pod("keyless-1", labels={FUNCTION_LABEL: "keyless"})
    cluster.pod("misfiled-1", labels={FUNCTION_LABEL: "misfiled"})
    bye_key = cluster.announce_secret("bye")
    misfiled_key = cluster.announce_secret("misfiled", data={"token": secrets.token_urlsafe(32)})
    cases: list[tuple[str, str, str, dict[str, Any], int, str]] = [
        ("a wrong key", secrets.token_urlsafe(32), "hello-2", {}, 401, "announce key"),
        ("a key cut short", hello_key[:-1], "hello-2", {}, 401, "announce key"),
        # Function bye's own key, from Function bye's pod, announcing it for hello.
        ("another Function's key", bye_key, "hello-2", {}, 401, "announce key"),
        (
            "another Function's key for its pod",
            bye_key,
            "bye-1",
            {"function": "hello"},
            401,
            "announce key",
        ),
        (
            "no announce Secret",
            hello_key,
            "keyless-1",
            {"function": "keyless"},
            401,
            "Secret keyless-announce does not exist",
        ),
        (
            "a Secret without the key",
            misfiled_key,
            "misfiled-1",
            {"function": "misfiled"},
            401,
            "has no text at 'key'",
        ),
        ("a pod without the label", hello_key, "plain", {}, 403, "=)"),
        ("another Function's pod", hello_key, "bye-1", {}, 403, "=bye)"),
        ("a pod that does not exist", hello_key, "hello-9", {}, 403, "does not exist"),
        (
            "another address",
            hello_key,
            "hello-2",
            {"source_ip": "10.244.0.8"},
            403,
            "not the address",
        ),
    ]
    wrong = []
    for what, key, pod, kwargs, status, message in cases:
        refused = cluster.refusal(key, pod, **kwargs)
        if refused.status != status or message not in refused.message:
            wrong.append(f"{what}: {refused.status} {refused.message}")
    assert wrong == []
    # And the right keys still hold.
    cluster.verify(hello_key, "hello-2")
    cluster.verify(bye_key, "bye-1", function="bye")


def test_a_leaving_pod_is_refused_and_a_deleted_one_too(cluster: Cluster, hello_key: str) -> None:
    cluster.pod("hello-4", labels={FUNCTION_LABEL: "hello"}, finalizers=("kubelambda.dev/test",))
    cluster.verify(hello_key, "hello-4")
    cluster.client.delete(POD, namespace=cluster.namespace, name="hello-4")
    refused = cluster.refusal(hello_key, "hello-4")
    assert (refused.status, refused.message) == (403, "pod hello-4 is being deleted")
    cluster.client.merge_patch(
        POD, namespace=cluster.namespace, name="hello-4", patch={"metadata": {"finalizers": None}}
    )
    wait_until(
        lambda: cluster.client.get(POD, namespace=cluster.namespace, name="hello-4") is None,
        what="pod hello-4 gone",
        timeout=30.0,
    )
    refused = cluster.refusal(hello_key, "hello-4")
    assert (refused.status, refused.message) == (
        403,
        f"pod hello-4 does not exist in {cluster.namespace}",
    )
