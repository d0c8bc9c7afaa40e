"""PodAnnouncements against the harness's real API server: a pod's bound token (TokenRequest with
the announce audience, as the projected volume gets it) is accepted for that pod of its Function
from its own address, and every other token, pod or address is refused with its status.

No kubelet runs here, so the pods stay Pending without an address: the announced one is a
made-up pod address, as the runtime would read it from its downward API.
"""

from __future__ import annotations

import asyncio
import json
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
from kubelambda.autoscaler.arrivals import AnnouncementRefused
from kubelambda.platforms.kubernetes.announcements import (
    ANNOUNCE_AUDIENCE,
    POD_NAME_EXTRA,
    POD_UID_EXTRA,
    PodAnnouncements,
)
from kubelambda.platforms.kubernetes.client import JSON, KubeClient
from kubelambda.platforms.kubernetes.kinds import POD, TOKEN_REVIEW

IP = "10.244.0.7"
FUNCTION_LABEL = "kubelambda.dev/function"


class Cluster:
    """A namespace of the shared API server with its `default` ServiceAccount, a client and the
    verifier, its blocking calls on a small pool as the operator's autoscaler runs them."""

    def __init__(self, api: ApiServer, namespace: str) -> None:
        self.api = api
        self.namespace = namespace
        self.client = KubeClient.from_config(api.kubeconfig)
        self.pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="announce")
        self.durations: dict[str, list[float]] = {"create": [], "get": []}
        self.announcements = PodAnnouncements(self.client, run=self.run)

    async def run(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        def timed() -> Any:
            started = time.perf_counter()
            try:
                return call(*args, **kwargs)
            finally:
                self.durations[call.__name__].append(time.perf_counter() - started)

        return await asyncio.get_running_loop().run_in_executor(self.pool, timed)

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
                "spec": {"containers": [{"name": "runtime", "image": "localhost/none:0"}]},
            }
        )

    def token(self, pod: JSON, *, audience: str = ANNOUNCE_AUDIENCE) -> str:
        """A token bound to `pod` (POST .../serviceaccounts/default/token with boundObjectRef),
        as the kubelet writes into the pod's projected volume."""
        meta = pod["metadata"]
        issued: str = self.api.kubectl(
            "create",
            "token",
            "default",
            "-n",
            self.namespace,
            f"--audience={audience}",
            "--duration=600s",
            "--bound-object-kind=Pod",
            f"--bound-object-name={meta['name']}",
            f"--bound-object-uid={meta['uid']}",
        ).stdout.strip()
        return issued

    def verify(self, token: str, pod: str, *, function: str = "hello", source_ip: str = IP) -> None:
        asyncio.run(
            self.announcements.verify(
                token=token,
                function=FunctionKey(self.namespace, function),
                pod=pod,
                ip=IP,
                source_ip=source_ip,
            )
        )

    def refusal(self, token: str, pod: str, **kwargs: Any) -> AnnouncementRefused:
        with pytest.raises(AnnouncementRefused) as refused:
            self.verify(token, pod, **kwargs)
        assert token not in str(refused.value)
        return refused.value


@pytest.fixture(scope="module")
def cluster(kube_api: ApiServer) -> Iterator[Cluster]:
    namespace = f"announce-{uuid.uuid4().hex[:8]}"
    kube_api.kubectl("create", "namespace", namespace)
    # The controller-manager's serviceaccount controller creates `default`; pods (and their
    # tokens) need it.
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


def test_the_api_server_names_the_pod_a_token_is_bound_to(cluster: Cluster) -> None:
    pod = cluster.pod("named", labels={FUNCTION_LABEL: "hello"})
    review = cluster.client.create(
        {
            "apiVersion": TOKEN_REVIEW.api_version,
            "kind": TOKEN_REVIEW.kind,
            "metadata": {},
            "spec": {"token": cluster.token(pod), "audiences": [ANNOUNCE_AUDIENCE]},
        }
    )
    status = review["status"]
    assert status["authenticated"] is True, status
    assert status["audiences"] == [ANNOUNCE_AUDIENCE]
    assert status["user"]["username"] == f"system:serviceaccount:{cluster.namespace}:default"
    extra = status["user"].get("extra") or {}
    assert extra.get(POD_NAME_EXTRA) == ["named"], f"no pod-name extra in {status['user']}"
    assert extra.get(POD_UID_EXTRA) == [pod["metadata"]["uid"]]


def test_a_pods_own_token_announces_it(cluster: Cluster) -> None:
    pod = cluster.pod("hello-1", labels={FUNCTION_LABEL: "hello"})
    # A fresh token each time: the API server caches a token's review for 10 s, and a
    # starting pod's token has never been reviewed.
    tokens = [cluster.token(pod) for _ in range(7)]
    cluster.durations = {"create": [], "get": []}
    took = []
    for token in tokens:
        started = time.perf_counter()
        cluster.verify(token, "hello-1")
        took.append(time.perf_counter() - started)
    # The IPv4-mapped form of the address the connection came from is the same address.
    cluster.verify(tokens[0], "hello-1", source_ip=f"::ffff:{IP}")
    print(
        f"\nannouncement verified in {statistics.median(took) * 1e3:.1f} ms (median of "
        f"{len(took)}): TokenReview {statistics.median(cluster.durations['create']) * 1e3:.1f} ms, "
        f"GET pod {statistics.median(cluster.durations['get']) * 1e3:.1f} ms, concurrently"
    )


def test_refusals(cluster: Cluster) -> None:
    hello = cluster.pod("hello-2", labels={FUNCTION_LABEL: "hello"})
    other = cluster.pod("hello-3", labels={FUNCTION_LABEL: "hello"})
    unlabelled = cluster.pod("plain", labels={})
    elsewhere = cluster.pod("bye-1", labels={FUNCTION_LABEL: "bye"})
    cases: list[tuple[str, str, str, dict[str, Any], int, str]] = [
        ("another pod's token", cluster.token(other), "hello-2", {}, 401, "another pod"),
        (
            "another audience",
            cluster.token(hello, audience="https://kubernetes.default.svc.cluster.local"),
            "hello-2",
            {},
            401,
            "does not authenticate",
        ),
        ("a pod without the label", cluster.token(unlabelled), "plain", {}, 403, "=)"),
        ("another Function's pod", cluster.token(elsewhere), "bye-1", {}, 403, "=bye)"),
        (
            "another Function's name",
            cluster.token(hello),
            "hello-2",
            {"function": "bye"},
            403,
            "not Function",
        ),
        (
            "another address",
            cluster.token(hello),
            "hello-2",
            {"source_ip": "10.244.0.8"},
            403,
            "not the address",
        ),
    ]
    wrong = []
    for what, token, pod, kwargs, status, message in cases:
        refused = cluster.refusal(token, pod, **kwargs)
        if refused.status != status or message not in refused.message:
            wrong.append(f"{what}: {refused.status} {refused.message}")
    assert wrong == []
    cluster.verify(cluster.token(hello), "hello-2")  # and the pod's own one still holds


def test_a_leaving_pod_is_refused_and_a_deleted_ones_token_stops_authenticating(
    cluster: Cluster,
) -> None:
    pod = cluster.pod(
        "hello-4", labels={FUNCTION_LABEL: "hello"}, finalizers=("kubelambda.dev/test",)
    )
    token = cluster.token(pod)
    cluster.verify(token, "hello-4")
    cluster.client.delete(POD, namespace=cluster.namespace, name="hello-4")
    # Deleting, its token still authenticates (for the API server's leeway of a minute).
    refused = cluster.refusal(token, "hello-4")
    assert (refused.status, refused.message) == (403, "pod hello-4 is being deleted")
    cluster.client.merge_patch(
        POD, namespace=cluster.namespace, name="hello-4", patch={"metadata": {"finalizers": None}}
    )
    wait_until(
        lambda: cluster.client.get(POD, namespace=cluster.namespace, name="hello-4") is None,
        what="pod hello-4 gone",
        timeout=30.0,
    )
    refused = cluster.refusal(token, "hello-4")
    assert refused.status == 401, refused.message
    # Once the API server's token cache (10 s) forgets it, the review itself refuses it.
    review: dict[str, Any] = {}

    def reviewed_unauthenticated() -> bool:
        review.update(
            cluster.client.create(
                {
                    "apiVersion": TOKEN_REVIEW.api_version,
                    "kind": TOKEN_REVIEW.kind,
                    "metadata": {},
                    "spec": {"token": token, "audiences": [ANNOUNCE_AUDIENCE]},
                }
            )
        )
        return review["status"].get("authenticated") is not True

    wait_until(reviewed_unauthenticated, what="the deleted pod's token refused", timeout=30.0)
    assert "invalidated" in json.dumps(review["status"]) or "not found" in json.dumps(
        review["status"]
    ), review["status"]
